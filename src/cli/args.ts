/**
 * A small, strict command-line parser: --flag value, --flag=value, boolean
 * flags, positionals. Unknown flags are errors with a suggestion.
 */
import { closestName } from '../errors.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  /** Takes a value (otherwise a boolean switch). */
  value: boolean;
}

export interface ParsedArgs {
  positionals: string[];
  flags: Map<string, string | true>;
}

export function parseArgs(argv: string[], specs: Record<string, FlagSpec>): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = specs[name];
    if (!spec) {
      const close = closestName(name, Object.keys(specs));
      throw new UsageError(`unknown flag --${name}${close === undefined ? '' : ` (did you mean --${close}?)`}`);
    }
    if (!spec.value) {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`);
      flags.set(name, true);
      continue;
    }
    const value = eq !== -1 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    flags.set(name, value);
  }
  return { positionals, flags };
}

export function numberFlag(args: ParsedArgs, name: string): number | undefined {
  const raw = args.flags.get(name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw === true || raw === '' || !Number.isFinite(value)) throw new UsageError(`--${name} expects a number, got '${String(raw)}'`);
  return value;
}

export function integerFlag(args: ParsedArgs, name: string): number | undefined {
  const value = numberFlag(args, name);
  if (value !== undefined && !Number.isInteger(value)) throw new UsageError(`--${name} expects an integer, got '${value}'`);
  return value;
}

/** "b1=500,b2=1e-4" -> { b1: 500, b2: 0.0001 }; "500,1e-4" -> [500, 0.0001]. */
export function parseParamList(text: string, flag: string): Record<string, number> | number[] {
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new UsageError(`--${flag} is empty`);
  const named = items.every((item) => item.includes('='));
  const parse = (raw: string, what: string): number => {
    const value = Number(raw);
    if (raw === '' || !Number.isFinite(value)) throw new UsageError(`--${flag}: '${raw}' is not a number (${what})`);
    return value;
  };
  if (named) {
    const out: Record<string, number> = {};
    for (const item of items) {
      const [name, raw] = item.split('=', 2) as [string, string];
      out[name.trim()] = parse(raw.trim(), name.trim());
    }
    return out;
  }
  if (items.some((item) => item.includes('='))) throw new UsageError(`--${flag}: give either all values by name (b1=1,b2=2) or none`);
  return items.map((item, i) => parse(item, `position ${i + 1}`));
}
