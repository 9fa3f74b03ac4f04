/**
 * Job files: every flag of `nlfit fit` as a key of a JSON or YAML object, so
 * a batch job is one file under version control. Keys are the long flag
 * names in camelCase (`maxFev`, `memoryLimit`; kebab-case `max-fev` is read
 * too), `data` is what the command line takes as its positional arguments,
 * and relative paths are relative to the job file's folder. Flags given on
 * the command line win over the file.
 *
 *   # job.yaml
 *   data: runs/042.csv
 *   model: a*exp(-b*x)+c
 *   p0: { a: 5, b: 1, c: 0 }
 *   memoryLimit: 2GB
 *   checkpoint: /scratch/fits/042
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { camelCase, jobValue, type FlagTable } from './args.js';
import { dataFromJob, type DataItem } from './dataSpec.js';
import { didYouMean, UsageError } from './exit.js';

/** Flags that make no sense inside a job file. */
const kCommandLineOnly = ['config', 'help'];

export interface JobFile {
  path: string;
  /** Values by flag name (kebab-case), parsed as the command line's. */
  values: Map<string, unknown>;
  data: DataItem[] | null;
}

async function parseText(path: string, text: string): Promise<unknown> {
  const lower = path.toLowerCase();
  try {
    if (lower.endsWith('.json')) return JSON.parse(text) as unknown;
    if (lower.endsWith('.yaml') || lower.endsWith('.yml')) {
      const { parse } = await import('yaml');
      return parse(text) as unknown;
    }
  } catch (error) {
    throw new UsageError(`${path}: not valid ${lower.endsWith('.json') ? 'JSON' : 'YAML'}: ${error instanceof Error ? error.message.split('\n')[0]!.replace(/:\s*$/, '') : String(error)}`);
  }
  throw new UsageError(`${path}: a job file is .json, .yaml or .yml`);
}

export async function readJobFile(path: string, flags: FlagTable): Promise<JobFile> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(`--config: cannot read '${path}'${code === 'ENOENT' ? ': no such file' : code ? ` (${code})` : ''}`);
  }
  const content = await parseText(path, text);
  if (content === null || typeof content !== 'object' || Array.isArray(content)) {
    throw new UsageError(`${path}: a job file holds an object of options (model: ..., data: ...)`);
  }
  const dir = dirname(path);
  const known = Object.keys(flags).filter((flag) => !kCommandLineOnly.includes(flag));
  const keys = ['data', ...known.map(camelCase)];
  const values = new Map<string, unknown>();
  let data: DataItem[] | null = null;
  for (const [key, value] of Object.entries(content)) {
    if (key === 'data') {
      data = dataFromJob(value, dir);
      continue;
    }
    const flag = known.find((name) => name === key || camelCase(name) === key);
    if (flag === undefined) throw new UsageError(`${path}: unknown key '${key}'${didYouMean(key, keys)}`);
    if (values.has(flag)) throw new UsageError(`${path}: '${key}' is given twice (as ${camelCase(flag)} and ${flag})`);
    if (value === null) continue;
    const def = flags[flag]!;
    let parsed: unknown;
    try {
      parsed = jobValue(def, value, flag);
    } catch (error) {
      if (error instanceof UsageError) throw new UsageError(`${path}: ${error.message.replaceAll(`--${flag}`, camelCase(flag))}`);
      throw error;
    }
    values.set(flag, def.path && typeof parsed === 'string' && !isAbsolute(parsed) ? join(dir, parsed) : parsed);
  }
  return { path, values, data };
}
