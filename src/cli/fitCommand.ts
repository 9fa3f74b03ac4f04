/**
 * `nlfit fit`: reads the data files, fits, prints the result, and exits with
 * a code a batch script can branch on (exit.ts). Progress goes to stderr,
 * results to stdout. SIGINT and SIGTERM stop the fit through its abort signal.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, sep } from 'node:path';
import type { ColumnSource } from '../data/source.js';
import { openSource } from '../data/sources/lazy.js';
import { Engine, streamBufferBytes } from '../fit.js';
import { availableMemory, formatBytes } from '../memory/index.js';
import { isCatalogName } from '../model/catalog.js';
import { freeIdentifiers } from '../model/compile.js';
import type { FitOptions } from '../options.js';
import type { FitResult } from '../solver/result.js';
import { parseArgs } from './args.js';
import { planData, type DataItem, type DataPlan } from './dataSpec.js';
import { DataError, didYouMean, kExitConverged, kExitNotConverged, UsageError } from './exit.js';
import { echoConfig, kFitFlags, mergeConfig, type FitConfig } from './fitFlags.js';
import { kFitHelp } from './help.js';
import { readJobFile } from './jobFile.js';
import { ProgressLine, progressMode } from './progress.js';
import { fullReport, shortSummary, toJson } from './report.js';
import { detectCpus, detectMemory } from './resources.js';
import { interruptOnSignals, kSignalExitCodes, type Interruption } from './signals.js';

export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

/** What `nlfit fit` decided about threads and memory, and why (the `run` field of --json). */
interface Resources {
  threads: number;
  threadsSource: string;
  memoryLimitMb: number | null;
  memorySource: string;
}

function resolveResources(config: FitConfig): Resources {
  const cpus = detectCpus();
  const threads = config.threads ?? cpus.cpus;
  const threadsSource = config.threads !== undefined ? '--threads' : `${cpus.source}: ${cpus.detail}`;
  if (config.memoryLimit !== undefined) {
    return { threads, threadsSource, memoryLimitMb: config.memoryLimit, memorySource: '--memory-limit' };
  }
  const memory = detectMemory(cpus.cpus);
  if (memory.memoryLimitMb !== null) return { threads, threadsSource, memoryLimitMb: memory.memoryLimitMb, memorySource: `${memory.source}: ${memory.detail}` };
  return { threads, threadsSource, memoryLimitMb: null, memorySource: availableMemory().detail };
}

/** An output file's folder must exist before an hour of fitting, not after. */
function checkOutputFolder(path: string | undefined, flag: string): void {
  if (path === undefined) return;
  const folder = dirname(path);
  let isFolder = false;
  try {
    isFolder = statSync(folder).isDirectory();
  } catch {
    isFolder = false;
  }
  if (!isFolder) throw new UsageError(`--${flag} ${path}: the folder '${folder}' does not exist`);
}

/**
 * The checkpoint file for --checkpoint: the path itself, or, when it names a
 * folder (it exists as one, or ends with '/'), '<folder>/<first data file's
 * name>.ckpt', so the tasks of a job array can share one folder. The folder
 * is created if it does not exist.
 */
function checkpointPath(given: string, data: readonly DataItem[]): string {
  let isFolder = given.endsWith('/') || given.endsWith(sep);
  try {
    isFolder ||= statSync(given).isDirectory();
  } catch {
    // Not there yet: a file to be written, or a folder named with a trailing '/'.
  }
  const file = isFolder ? join(given, `${basename(data[0]!.path).replace(/(\.csv\.gz|\.[^.]*)$/i, '')}.ckpt`) : given;
  try {
    mkdirSync(dirname(file), { recursive: true });
  } catch (error) {
    throw new UsageError(`--checkpoint ${given}: cannot create the folder '${dirname(file)}' (${(error as { code?: string }).code ?? String(error)})`);
  }
  return file;
}

/** The data columns of a model, or null when the expression does not parse (the fit reports that). */
function modelVariables(model: string, columns: readonly string[]): string[] | null {
  if (isCatalogName(model)) return ['x'];
  try {
    return freeIdentifiers(model).filter((name) => columns.includes(name) && name !== 'y' && name !== 'sigma');
  } catch {
    return null;
  }
}

/** The fit's column names (the source's plus renames), after checking the renames and that there is a y. */
function fitColumns(source: ColumnSource, plan: DataPlan): string[] {
  const columns = [...source.columns];
  for (const [target, from] of Object.entries(plan.rename)) {
    if (!columns.includes(from)) {
      throw new UsageError(`--columns ${target}=${from}: ${source.description} has no column '${from}'${didYouMean(from, columns)} (its columns: ${columns.join(', ')})`);
    }
  }
  const names = [...new Set([...columns, ...Object.keys(plan.rename)])];
  if (!names.includes('y')) {
    throw new DataError(`${source.description} has no column 'y' for the response (its columns: ${columns.join(', ')}); name it with --columns y=<column>`);
  }
  return names;
}

/** The openSource() budget for a CSV held in memory: the library's own rule. */
function bufferBytes(memoryLimitMb: number | null): number {
  return streamBufferBytes(memoryLimitMb === null ? {} : { memoryLimitMb });
}

function fitOptions(config: FitConfig, source: ColumnSource, plan: DataPlan, resources: Resources): FitOptions {
  const options: FitOptions = { model: config.model!, data: source, threads: resources.threads };
  if (resources.memoryLimitMb !== null) options.memoryLimitMb = resources.memoryLimitMb;
  if (config.p0 !== undefined) options.p0 = config.p0;
  if (config.bounds !== undefined) options.bounds = config.bounds;
  if (config.fixed !== undefined) options.fixed = config.fixed;
  if (config.loss !== undefined) options.loss = config.loss as FitOptions['loss'];
  if (config.fScale !== undefined) options.fScale = config.fScale;
  if (config.absoluteSigma) options.absoluteSigma = true;
  if (config.multistart !== undefined) options.multistart = config.multistart;
  if (config.ftol !== undefined) options.ftol = config.ftol;
  if (config.xtol !== undefined) options.xtol = config.xtol;
  if (config.gtol !== undefined) options.gtol = config.gtol;
  if (config.maxFev !== undefined) options.maxFev = config.maxFev;
  if (config.workflow !== undefined) options.workflow = config.workflow as FitOptions['workflow'];
  if (config.goal !== undefined) options.goal = config.goal as FitOptions['goal'];
  if (config.strategy !== undefined) options.strategy = config.strategy as FitOptions['strategy'];
  const renames = Object.entries(plan.rename).filter(([target, from]) => target !== from);
  if (renames.length > 0) options.transform = Object.fromEntries(renames);
  if (config.residuals !== undefined) options.export = { path: config.residuals };
  return options;
}

/** Rows of the plotted variable, y and sigma, read from the source under their source names. */
async function plotResult(r: FitResult, source: ColumnSource, plan: DataPlan, columns: string[], variable: string, config: FitConfig): Promise<void> {
  const { plotFit } = await import('./plot.js');
  const sourceName = (name: string): string => plan.rename[name] ?? name;
  const weighted = columns.includes('sigma');
  const svg = await plotFit({
    nPoints: source.nRows,
    readRows: async (start, count) => {
      const rows: Record<string, Float64Array> = { x: new Float64Array(count), y: new Float64Array(count) };
      if (weighted) rows.sigma = new Float64Array(count);
      const into: Record<string, Float64Array> = {};
      for (const [name, values] of Object.entries(rows)) into[sourceName(name === 'x' ? variable : name)] = values;
      await source.read(start, count, into);
      return weighted ? { x: rows.x!, y: rows.y!, sigma: rows.sigma! } : { x: rows.x!, y: rows.y! };
    },
    predict: (x) => r.predict(x),
    xName: sourceName(variable),
    yName: sourceName('y'),
    title: `${r.model}   (${config.data.map((item) => basename(item.path)).join(', ')})\n` +
      `${r.nPoints} points, reduced chi-square ${r.reducedChi2.toPrecision(4)}, R-squared ${r.rSquared.toPrecision(6)}${r.success ? '' : ', NOT converged'}`,
  });
  writeFileSync(config.plot!, svg);
}

/** Filled by commandFit as it learns them: the data files, so an error naming one exits 3. */
export interface FitContext {
  dataPaths: string[];
  /** A rank of an MPI job other than 0: it prints nothing, errors included (rank 0 reports them, naming the rank). */
  silent?: boolean;
}

/** The rank the launcher gave this process (mpirun, srun, Hydra), from its environment; null outside one. */
export function launcherRank(env: NodeJS.ProcessEnv = process.env): number | null {
  for (const name of ['OMPI_COMM_WORLD_RANK', 'PMIX_RANK', 'PMI_RANK', 'MV2_COMM_WORLD_RANK', 'SLURM_PROCID']) {
    const value = env[name];
    if (value !== undefined && /^\d+$/.test(value)) return Number(value);
  }
  return null;
}

const kSilentIo: CommandIo = { out: () => {}, err: () => {} };

export async function commandFit(argv: readonly string[], commandIo: CommandIo, context: FitContext): Promise<number> {
  let io = commandIo;
  const args = parseArgs(argv, kFitFlags);
  if (args.values.get('help') === true) {
    io.out(kFitHelp);
    return kExitConverged;
  }
  const configPath = args.values.get('config') as string | undefined;
  const config = mergeConfig(args, configPath === undefined ? null : await readJobFile(configPath, kFitFlags));
  if (config.mpi && (launcherRank() ?? 0) > 0) {
    io = kSilentIo;
    context.silent = true;
  }
  const plan = planData(config.data, config.columns);
  context.dataPaths = plan.paths;
  if (config.model === undefined) throw new UsageError(`fit needs --model (an expression such as "a*exp(-b*x)+c", or a catalog model: see 'nlfit models')`);
  if (config.resume && config.checkpoint === undefined) throw new UsageError('--resume needs --checkpoint <path>');
  if (config.checkpointEvery !== undefined && config.checkpoint === undefined) throw new UsageError('--checkpoint-every needs --checkpoint <path>');
  checkOutputFolder(config.residuals, 'residuals');
  checkOutputFolder(config.plot, 'plot');
  const checkpointFile = config.checkpoint === undefined ? null : checkpointPath(config.checkpoint, config.data);
  const resources = resolveResources(config);

  let source: ColumnSource;
  try {
    source = await openSource(plan.spec, { bufferBytes: bufferBytes(resources.memoryLimitMb) });
  } catch (error) {
    throw new DataError(error instanceof Error ? error.message : String(error), error);
  }
  const engine = new Engine({ threads: resources.threads });
  let interruption: Interruption | null = null;
  try {
    const columns = fitColumns(source, plan);
    const variables = modelVariables(config.model, columns);
    if (config.plot !== undefined && variables !== null && variables.length !== 1) {
      throw new UsageError(
        `--plot draws models of one variable; ${JSON.stringify(config.model)} reads ${variables.length === 0 ? 'none' : `${variables.length} (${variables.join(', ')})`}`,
      );
    }
    const options = fitOptions(config, source, plan, resources);
    const progress = new ProgressLine(process.stderr, {
      mode: progressMode(process.stderr.isTTY === true, config.quiet || context.silent === true, config.progress),
      nPoints: source.nRows,
    });
    progress.note(
      `nlfit: ${source.description}: ${source.nRows} rows; ${resources.threads} thread${resources.threads === 1 ? '' : 's'} (${resources.threadsSource}); ` +
        `memory ${resources.memoryLimitMb === null ? 'as detected' : formatBytes(resources.memoryLimitMb * 2 ** 20)} (${resources.memorySource})`,
    );
    options.onProgress = progress.onEvent;
    interruption = interruptOnSignals((signal) => {
      progress.clear();
      if (!config.quiet) io.err(`nlfit: ${signal}: stopping after the current pass${checkpointFile ? `, saving the checkpoint ${checkpointFile}` : ''} (again to exit at once)`);
    });
    options.signal = interruption.controller.signal;
    if (checkpointFile !== null) {
      options.checkpoint = { path: checkpointFile, resume: config.resume, ...(config.checkpointEvery === undefined ? {} : { everyIterations: config.checkpointEvery }) };
    }
    if (config.mpi) options.distributed = 'mpi';
    let r: FitResult;
    try {
      r = await engine.fit(options);
    } finally {
      progress.finish();
    }
    // Under MPI every rank holds the result; rank 0 alone writes it out (the fit has told the real rank).
    if ((r.execution.distributed?.rank ?? 0) > 0) {
      context.silent = true;
      return r.success ? kExitConverged : kExitNotConverged;
    }
    // A signal during the last pass that the fit finished anyway: the result stands.
    if (config.plot !== undefined) await plotResult(r, source, plan, columns, variables![0]!, config);
    const code = r.success ? kExitConverged : kExitNotConverged;
    if (config.json) {
      const run = { jobFile: config.jobFile, ...resources, plot: config.plot ?? null, exitCode: code };
      io.out(toJson({ ...r.toJSON(), checkpoint: r.checkpoint, config: echoConfig(config), run }));
    }
    if (config.report) {
      const report = fullReport(r, {
        data: `${plan.paths.join(', ')} (${source.kind}, ${source.nRows} rows)`,
        threads: `${resources.threads} (${resources.threadsSource})`,
        memory: resources.memoryLimitMb === null ? `as detected: ${resources.memorySource}` : `${formatBytes(resources.memoryLimitMb * 2 ** 20)} (${resources.memorySource})`,
        plot: config.plot ?? null,
      });
      if (config.json) io.err(report);
      else io.out(report);
    } else if (!config.json) {
      io.out(shortSummary(r));
      if (config.plot !== undefined) io.out(`  plot written to ${config.plot}`);
    }
    return code;
  } catch (error) {
    const signal = interruption?.received() ?? null;
    if (signal === null) throw error;
    if (!config.quiet) io.err(`nlfit: interrupted by ${signal}${checkpointFile ? `; the checkpoint is ${checkpointFile}: run the same command with --resume to continue` : ''}`);
    return kSignalExitCodes[signal];
  } finally {
    interruption?.dispose();
    await source.close();
    await engine.close();
  }
}
