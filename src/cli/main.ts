#!/usr/bin/env node
/**
 * The nlfit command.
 *   nlfit fit data.csv --model "b1*(1-exp(-b2*x))" --p0 b1=500,b2=1e-4 [--json]
 *   nlfit demo [--points N] [--threads N]
 * Exit codes: 0 success, 1 the fit did not converge or failed, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { fit } from '../fit.js';
import { integerFlag, numberFlag, parseArgs, parseParamList, UsageError, type FlagSpec } from './args.js';
import { readCsvColumns } from './csv.js';
import { runDemo } from './demo.js';

const USAGE = `Usage: nlfit <command> [options]

Commands:
  fit <data.csv>   fit a model to the columns of a CSV file (header row; 'y' is the response)
  demo             fit a generated 10-million-point problem and print the report
  help             this text

Run 'nlfit <command> --help' for a command's options.`;

const FIT_USAGE = `Usage: nlfit fit <data.csv> --model <expr|catalog name> [options]

Options:
  --model <expr>        model expression, e.g. "b1*(1-exp(-b2*x))", or a catalog model
                        (exponential, double_exponential, gaussian, lorentzian, logistic,
                        power_law, linear, polyN)
  --p0 <list>           starting values: b1=500,b2=1e-4 (or values in order of appearance);
                        optional for catalog models
  --json                print the result as JSON
  --threads <n>         worker threads to use
  --absolute-sigma      do not rescale the covariance by the reduced chi-square
  --ftol <x>            relative tolerance on the sum of squares (default 1e-12)
  --xtol <x>            relative tolerance on the parameters (default 1e-12)
  --gtol <x>            orthogonality tolerance (default 0)
  --max-fev <n>         most passes over the data (default 100*(params+1))

The CSV needs a header row. 'y' is the response, 'sigma' (optional) the standard
deviation of each y, every other column a variable the model may use.

Example:
  nlfit fit misra1a.csv --model "b1*(1-exp(-b2*x))" --p0 b1=500,b2=1e-4`;

const DEMO_USAGE = `Usage: nlfit demo [--points N] [--threads N] [--seed N]

Generates y = 5*exp(-1.3*x) + 0.7 + noise on [0, 5] and fits a*exp(-b*x)+c.
  --points <n>    data points (default 10000000)
  --threads <n>   worker threads (default: all)
  --seed <n>      noise seed (default 1)`;

const fitFlags: Record<string, FlagSpec> = {
  model: { value: true },
  p0: { value: true },
  json: { value: false },
  threads: { value: true },
  'absolute-sigma': { value: false },
  ftol: { value: true },
  xtol: { value: true },
  gtol: { value: true },
  'max-fev': { value: true },
  help: { value: false },
};

const demoFlags: Record<string, FlagSpec> = {
  points: { value: true },
  threads: { value: true },
  seed: { value: true },
  help: { value: false },
};

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function commandFit(argv: string[]): Promise<number> {
  const args = parseArgs(argv, fitFlags);
  if (args.flags.has('help')) {
    out(FIT_USAGE);
    return 0;
  }
  if (args.positionals.length !== 1) throw new UsageError('fit needs exactly one data file');
  const model = args.flags.get('model');
  if (typeof model !== 'string') throw new UsageError('fit needs --model');
  const p0Text = args.flags.get('p0');
  const options: Record<string, unknown> = {
    model,
    data: readCsvColumns(args.positionals[0]!),
  };
  if (typeof p0Text === 'string') options.p0 = parseParamList(p0Text, 'p0');
  if (args.flags.has('absolute-sigma')) options.absoluteSigma = true;
  const numeric: Array<[string, string, 'number' | 'integer']> = [
    ['threads', 'threads', 'integer'],
    ['ftol', 'ftol', 'number'],
    ['xtol', 'xtol', 'number'],
    ['gtol', 'gtol', 'number'],
    ['max-fev', 'maxFev', 'integer'],
  ];
  for (const [flag, key, kind] of numeric) {
    const value = kind === 'integer' ? integerFlag(args, flag) : numberFlag(args, flag);
    if (value !== undefined) options[key] = value;
  }
  const result = await fit(options as unknown as Parameters<typeof fit>[0]);
  if (args.flags.has('json')) out(JSON.stringify(result, null, 2));
  else out(result.summary());
  return result.success ? 0 : 1;
}

async function commandDemo(argv: string[]): Promise<number> {
  const args = parseArgs(argv, demoFlags);
  if (args.flags.has('help')) {
    out(DEMO_USAGE);
    return 0;
  }
  if (args.positionals.length > 0) throw new UsageError(`demo takes no arguments (got '${args.positionals[0]}')`);
  const points = integerFlag(args, 'points') ?? 10_000_000;
  if (points < 3) throw new UsageError('--points must be at least 3');
  const threads = integerFlag(args, 'threads');
  const seed = integerFlag(args, 'seed') ?? 1;
  await runDemo({ points, seed, ...(threads === undefined ? {} : { threads }) }, out);
  return process.exitCode === 1 ? 1 : 0;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'fit':
        return await commandFit(rest);
      case 'demo':
        return await commandDemo(rest);
      case 'help':
      case '--help':
      case '-h':
      case undefined:
        out(USAGE);
        return command === undefined ? 2 : 0;
      case '--version':
        out(version());
        return 0;
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`nlfit: ${error.message}\n\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`nlfit: ${error instanceof Error ? error.message : String(error)}\n`);
    return error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError ? 2 : 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
