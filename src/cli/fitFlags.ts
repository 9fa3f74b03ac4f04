/**
 * The flags of `nlfit fit`, how each parses (on the command line and in a
 * job file), and the merged configuration: job file first, command line over
 * it. The configuration is echoed in the --json result in job-file form, so
 * it can be saved and run again.
 */
import { resolve, sep } from 'node:path';
import { kLosses } from '../options.js';
import { kGoals, kWorkflows } from '../workflow.js';
import { camelCase, type FlagDef, type FlagTable, type ParsedArgs } from './args.js';
import { formatDataItem, parseDataItem, type DataItem } from './dataSpec.js';
import { badValue } from './exit.js';
import type { JobFile } from './jobFile.js';
import {
  boundsFromJob,
  columnsFromJob,
  namesFromJob,
  paramListFromJob,
  parseBounds,
  choiceFlag as choice,
  integerFlag as integer,
  parseColumns,
  parseNames,
  parseNumber,
  parseParamList,
  parseSize,
  parseText as text,
  switchFlag,
  toleranceFlag as tolerance,
  type BoundsSpec,
  type ColumnsSpec,
} from './values.js';

const kStrategies = ['auto', 'standard', 'chunked', 'streaming'] as const;


/** A memory size of at least 1 MB (the library's smallest memoryLimitMb). */
export function parseMemoryLimit(value: string, flag: string): number {
  const mb = parseSize(value, flag);
  if (mb < 1) throw badValue(flag, 'at least 1MB', value);
  return mb;
}

function outputPath(extensions: RegExp, expected: string): FlagDef {
  return {
    path: true,
    parse: (value, flag) => {
      if (!extensions.test(value)) throw badValue(flag, expected, value);
      return value;
    },
  };
}

export const kFitFlags: FlagTable = {
  config: { parse: text },
  model: { parse: text },
  p0: { parse: parseParamList, fromJob: paramListFromJob },
  bounds: { parse: parseBounds, fromJob: boundsFromJob },
  fixed: { parse: parseNames, fromJob: namesFromJob },
  loss: choice(kLosses),
  'f-scale': { parse: (value, flag) => parseNumber(value, flag, { above: 0 }) },
  'absolute-sigma': switchFlag,
  multistart: integer,
  columns: { parse: parseColumns, fromJob: columnsFromJob },
  ftol: tolerance,
  xtol: tolerance,
  gtol: tolerance,
  'max-fev': integer,
  workflow: choice(kWorkflows),
  goal: choice(kGoals),
  strategy: choice(kStrategies),
  threads: integer,
  'memory-limit': { parse: parseMemoryLimit },
  checkpoint: { parse: text, path: true },
  'checkpoint-every': integer,
  resume: switchFlag,
  json: switchFlag,
  report: switchFlag,
  residuals: outputPath(/\.csv(\.gz)?$/i, 'a .csv or .csv.gz file'),
  plot: outputPath(/\.svg$/i, 'an .svg file'),
  progress: switchFlag,
  quiet: switchFlag,
  mpi: switchFlag,
  help: switchFlag,
};

/** The fit's configuration after merging, typed. */
export interface FitConfig {
  data: DataItem[];
  jobFile: string | null;
  model?: string;
  p0?: Record<string, number> | number[];
  bounds?: BoundsSpec;
  fixed?: string[];
  loss?: string;
  fScale?: number;
  absoluteSigma: boolean;
  multistart?: number;
  columns?: ColumnsSpec;
  ftol?: number;
  xtol?: number;
  gtol?: number;
  maxFev?: number;
  workflow?: string;
  goal?: string;
  strategy?: string;
  threads?: number;
  /** MB. */
  memoryLimit?: number;
  checkpoint?: string;
  checkpointEvery?: number;
  resume: boolean;
  json: boolean;
  report: boolean;
  residuals?: string;
  plot?: string;
  progress: boolean;
  quiet: boolean;
  /** One fit across the ranks of an MPI job (every rank runs the same command). */
  mpi: boolean;
  /** Every value given, by flag name, for the echo. */
  given: Map<string, unknown>;
}

/** Job file first, then the command line over it. */
export function mergeConfig(args: ParsedArgs, job: JobFile | null): FitConfig {
  const given = new Map<string, unknown>(job?.values ?? []);
  for (const [flag, value] of args.values) if (flag !== 'config' && flag !== 'help') given.set(flag, value);
  const data = args.positionals.length > 0 ? args.positionals.map(parseDataItem) : (job?.data ?? []);
  const get = <T>(flag: string): T | undefined => given.get(flag) as T | undefined;
  const on = (flag: string): boolean => given.get(flag) === true;
  const config: FitConfig = {
    data,
    jobFile: job?.path ?? null,
    absoluteSigma: on('absolute-sigma'),
    resume: on('resume'),
    json: on('json'),
    report: on('report'),
    progress: on('progress'),
    quiet: on('quiet'),
    mpi: on('mpi'),
    given,
  };
  const optional: Array<[keyof FitConfig, string]> = [
    ['model', 'model'], ['p0', 'p0'], ['bounds', 'bounds'], ['fixed', 'fixed'], ['loss', 'loss'], ['fScale', 'f-scale'],
    ['multistart', 'multistart'], ['columns', 'columns'], ['ftol', 'ftol'], ['xtol', 'xtol'], ['gtol', 'gtol'],
    ['maxFev', 'max-fev'], ['workflow', 'workflow'], ['goal', 'goal'], ['strategy', 'strategy'], ['threads', 'threads'],
    ['memoryLimit', 'memory-limit'], ['checkpoint', 'checkpoint'], ['checkpointEvery', 'checkpoint-every'],
    ['residuals', 'residuals'], ['plot', 'plot'],
  ];
  for (const [key, flag] of optional) {
    const value = get(flag);
    if (value !== undefined) (config as unknown as Record<string, unknown>)[key] = value;
  }
  return config;
}

/** The configuration in job-file form (camelCase keys, absolute paths), for the --json result. */
export function echoConfig(config: FitConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // Absolute paths, so the echo runs as a job file from any folder.
  const data = config.data.map((item) => formatDataItem({ ...item, path: resolve(item.path) }));
  if (data.length > 0) out.data = data.length === 1 ? data[0] : data;
  for (const [flag, value] of config.given) {
    const columns = flag === 'columns' ? (value as ColumnsSpec) : null;
    // A trailing '/' means a folder to --checkpoint: keep it.
    const path = kFitFlags[flag]?.path === true && typeof value === 'string' ? resolve(value) + (/[\\/]$/.test(value) ? sep : '') : null;
    out[camelCase(flag)] = columns ? ('names' in columns ? columns.names : columns.rename) : (path ?? value);
  }
  return out;
}
