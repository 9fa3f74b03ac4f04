/**
 * A small, strict command-line parser: `--flag value`, `--flag=value`,
 * switches (`--json`, or `--json=false` to override a job file), positionals.
 * An unknown flag is a usage error with a suggestion; `-h` is `--help`.
 */
import { badValue, didYouMean, UsageError } from './exit.js';

export interface FlagDef {
  /** Parses the text after the flag. Absent: the flag is a switch. */
  parse?: (text: string, flag: string) => unknown;
  /** Parses a job-file value (any JSON or YAML type). Default: parse() of a string or number. */
  fromJob?: (value: unknown, flag: string) => unknown;
  /** The value is a path: in a job file, relative to the job file's folder. */
  path?: boolean;
}

export type FlagTable = Record<string, FlagDef>;

export interface ParsedArgs {
  positionals: string[];
  /** Values by flag name (kebab-case, as typed without the dashes). */
  values: Map<string, unknown>;
}

export function parseArgs(argv: readonly string[], flags: FlagTable): ParsedArgs {
  const positionals: string[] = [];
  const values = new Map<string, unknown>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h') {
      values.set('help', true);
      continue;
    }
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const def = flags[name];
    if (!def) throw new UsageError(`unknown flag --${name}${didYouMean(name, Object.keys(flags), (n) => `--${n}`)}`);
    if (!def.parse) {
      values.set(name, eq === -1 ? true : parseSwitch(arg.slice(eq + 1), name));
      continue;
    }
    let text: string | undefined;
    if (eq !== -1) text = arg.slice(eq + 1);
    else {
      text = argv[i + 1];
      // "--model --p0 1" means the value was forgotten, not that the model is "--p0".
      if (text !== undefined && text.startsWith('--') && flags[text.slice(2).split('=')[0]!]) text = undefined;
      else i++;
    }
    if (text === undefined) throw new UsageError(`--${name} needs a value`);
    values.set(name, def.parse(text, name));
  }
  return { positionals, values };
}

function parseSwitch(text: string, flag: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw badValue(flag, 'true or false (or the flag alone for true)', text);
}

/** A flag's value from a job file: through fromJob, or parse() of its text. */
export function jobValue(def: FlagDef, value: unknown, flag: string): unknown {
  if (def.fromJob) return def.fromJob(value, flag);
  if (!def.parse) {
    if (typeof value === 'boolean') return value;
    if (typeof value === 'string') return parseSwitch(value, flag);
    throw badValue(flag, 'true or false', value);
  }
  if (typeof value === 'string') return def.parse(value, flag);
  if (typeof value === 'number') return def.parse(String(value), flag);
  throw badValue(flag, 'a string or a number', value);
}

/** 'max-fev' -> 'maxFev'. */
export function camelCase(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
