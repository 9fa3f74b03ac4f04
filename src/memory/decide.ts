/**
 * The coordinator's choice of execution strategy, by memory.
 *
 *   'standard'   one in-memory pass on the calling thread (small data)
 *   'chunked'    in-memory data, passes on the worker pool
 *   'streaming'  the data stays in its source and is read chunk by chunk,
 *                into a ring of chunk buffers, on every pass
 *
 * Data already in memory is never streamed by 'auto': it is resident anyway,
 * so streaming would save nothing. Data in a file or a stream is loaded when
 * the whole in-memory fit (estimate.ts peakBytes) fits under the threshold
 * (safetyFactor x available memory), and streamed otherwise, with chunks sized
 * so the ring takes about half of what the threshold leaves after the fixed
 * working memory. The strategy never changes the answer (fixed blocks, fixed
 * reduction tree), only time and memory.
 *
 *   const d = decide({ nPoints: 1e8, nParams: 3, nVariables: 1, threads: 2, dataLocation: 'file', memoryLimitMb: 160 });
 *   d.strategy; // 'streaming'
 *   d.reason;   // "data (1.5 GB) exceeds 75% of the 160.0 MB limit (memoryLimitMb): streaming from the file in 11.5 MB chunks, 4 in flight"
 */
import { invalidRange, invalidType } from '../errors.js';
import { kBlockSize } from '../exec/layout.js';
import { kInlineMaxPoints } from '../options.js';
import { kWorkflows, type Workflow } from '../workflow.js';
import {
  checkSafetyFactor,
  checkSizes,
  dataBytesOf,
  estimateMemory,
  inMemoryStrategy,
  kMinChunkPoints,
  type ExecutionStrategy,
  type MemoryBudget,
} from './estimate.js';
import { formatBytes, kMiB } from './format.js';
import type { MemoryEnvironment, MemorySource } from './limits.js';

export type DataLocation = 'memory' | 'file' | 'stream';

/** Largest chunk buffer (one column set of one chunk) the ring allocates. */
export const kMaxChunkBufferBytes = 64 * kMiB;
/** Share of the threshold left after the working memory that the streaming ring may take. */
const kRingShare = 0.5;
/** Chunk buffers in flight beyond the threads: one being read, one ready. */
const kExtraChunksInFlight = 2;

export interface DecideOptions {
  nPoints: number;
  nParams: number;
  /** Variable columns the model reads (not y or sigma). */
  nVariables: number;
  /** Worker threads the fit may use. */
  threads: number;
  /** Default 'auto'. */
  workflow?: Workflow;
  /** The user's budget above the current footprint, MB (2^20 bytes). */
  memoryLimitMb?: number;
  /** A sigma column is read too. Default false. */
  weighted?: boolean;
  /**
   * Where the columns are: 'memory' (float64 columns already in this process;
   * they are not counted again), 'file' or 'stream' (loading them costs their
   * size). Default 'memory'.
   */
  dataLocation?: DataLocation;
  /** Share of the available memory the plan may use, in (0, 1]. Default 0.75. */
  safetyFactor?: number;
  /** The machine, for deterministic tests; defaults read the real one. */
  environment?: MemoryEnvironment;
}

export interface DecisionConfig {
  /** Threads the passes run on (1 for 'standard': the calling thread). */
  threads: number;
  /** Points per chunk (pool task or streamed chunk), a multiple of 512. */
  chunkSize: number;
  /** Chunks processed or buffered at once. */
  chunksInFlight: number;
  safetyFactor: number;
  /** safetyFactor x availableBytes. */
  thresholdBytes: number;
  availableBytes: number;
  source: MemorySource;
  dataLocation: DataLocation;
  workflow: Workflow;
}

export interface Decision {
  strategy: ExecutionStrategy;
  /** Predicted peak (budget.peakBytes) / threshold: above 1 the plan does not fit. */
  memoryPressure: number;
  /** Points per chunk, a multiple of 512; at least 32768 unless the data is smaller. */
  chunkSize: number;
  chunksInFlight: number;
  config: DecisionConfig;
  /** The arithmetic for the chosen strategy. */
  budget: MemoryBudget;
  /** Why, in words, with sizes. */
  reason: string;
}

function roundUpToBlocks(points: number): number {
  return Math.ceil(points / kBlockSize) * kBlockSize;
}

function checkWorkflow(value: unknown): Workflow {
  if (value === undefined) return 'auto';
  if (typeof value !== 'string') throw invalidType('workflow', `one of ${kWorkflows.join(', ')}`, value);
  if (!(kWorkflows as readonly string[]).includes(value)) throw invalidRange('workflow', `one of ${kWorkflows.join(', ')}`, value);
  return value as Workflow;
}

function checkDataLocation(value: unknown): DataLocation {
  if (value === undefined) return 'memory';
  if (value !== 'memory' && value !== 'file' && value !== 'stream') {
    throw invalidRange('dataLocation', "'memory', 'file' or 'stream'", value);
  }
  return value;
}

/** "the 160.0 MB limit (memoryLimitMb)", "the 412.0 MB container headroom (cgroup v2)", ... */
function describeBudget(budget: MemoryBudget): string {
  const size = formatBytes(budget.availableBytes);
  switch (budget.source) {
    case 'memoryLimitMb':
      return `the ${size} limit (memoryLimitMb)`;
    case 'cgroup-v2':
      return `the ${size} container headroom (cgroup v2)`;
    case 'cgroup-v1':
      return `the ${size} container headroom (cgroup v1)`;
    case 'constrainedMemory':
      return `the ${size} headroom under process.constrainedMemory()`;
    case 'free':
      return `the ${size} of free memory`;
  }
}

function percent(fraction: number): string {
  return `${Math.round(fraction * 100)}%`;
}

/** "data (1.5 GB) exceeds 75% of the 160.0 MB limit (memoryLimitMb)" or the data-plus-working variant. */
function overBudget(budget: MemoryBudget): string {
  const share = `${percent(budget.safetyFactor)} of ${describeBudget(budget)}`;
  if (!budget.dataFits) return `data (${formatBytes(budget.dataBytes)}) exceeds ${share}`;
  return `data (${formatBytes(budget.dataBytes)}) plus working memory (${formatBytes(budget.workingBytes)}) exceeds ${share}`;
}

function fitsBudget(budget: MemoryBudget): string {
  return `data (${formatBytes(budget.dataBytes)}) and working memory (${formatBytes(budget.workingBytes)}) fit in ${percent(budget.safetyFactor)} of ${describeBudget(budget)}`;
}

function streamVerb(location: DataLocation): string {
  if (location === 'file') return 'streaming from the file';
  if (location === 'stream') return 'streaming the ingested input (from memory or its temporary file)';
  return 'streaming from the in-memory columns';
}

interface Inputs {
  nPoints: number;
  nParams: number;
  nVariables: number;
  threads: number;
  weighted: boolean;
  memoryLimitMb: number | undefined;
  safetyFactor: number;
  dataLocation: DataLocation;
  environment: MemoryEnvironment | undefined;
}

function budgetFor(inputs: Inputs, strategy: ExecutionStrategy, chunkSize?: number, chunksInFlight?: number): MemoryBudget {
  return estimateMemory({
    nPoints: inputs.nPoints,
    nParams: inputs.nParams,
    nVariables: inputs.nVariables,
    threads: inputs.threads,
    weighted: inputs.weighted,
    memoryLimitMb: inputs.memoryLimitMb,
    safetyFactor: inputs.safetyFactor,
    strategy,
    chunkSize,
    chunksInFlight,
    dataResident: inputs.dataLocation === 'memory',
    environment: inputs.environment,
  });
}

interface Plan {
  strategy: ExecutionStrategy;
  threads: number;
  chunkSize: number;
  chunksInFlight: number;
  budget: MemoryBudget;
  /** What the plan does, in words ("loading the file and fitting on the pool (2 threads, 2 chunks of 5000192 points)"). */
  action: string;
  /** Streaming only: even the smallest chunk does not fit. */
  belowMinimum: boolean;
}

function inMemoryPlan(inputs: Inputs, strategy: 'standard' | 'chunked'): Plan {
  const whole = roundUpToBlocks(inputs.nPoints);
  const budget = budgetFor(inputs, strategy);
  const load = inputs.dataLocation === 'file' ? 'loading the file and fitting' : inputs.dataLocation === 'stream' ? 'loading the input and fitting' : 'fitting it in place';
  if (strategy === 'standard') {
    return { strategy, threads: 1, chunkSize: whole, chunksInFlight: 1, budget, action: `${load} in one pass on the calling thread`, belowMinimum: false };
  }
  // As the pool does by default: one task per thread, no smaller than kMinChunkPoints.
  const chunkSize = Math.min(whole, Math.max(kMinChunkPoints, roundUpToBlocks(Math.ceil(inputs.nPoints / inputs.threads))));
  const chunks = Math.ceil(inputs.nPoints / chunkSize);
  const chunksInFlight = Math.min(inputs.threads, chunks);
  const threadText = `${inputs.threads} thread${inputs.threads === 1 ? '' : 's'}`;
  return {
    strategy,
    threads: inputs.threads,
    chunkSize,
    chunksInFlight,
    budget,
    action: `${load} on the pool (${threadText}, ${chunks} chunk${chunks === 1 ? '' : 's'} of ${chunkSize} points)`,
    belowMinimum: false,
  };
}

function streamingPlan(inputs: Inputs): Plan {
  const whole = roundUpToBlocks(inputs.nPoints);
  const smallest = Math.min(kMinChunkPoints, whole);
  const bytesPerPoint = dataBytesOf(1, inputs.nVariables, inputs.weighted);
  const ringFor = (chunkSize: number): number => Math.max(1, Math.min(inputs.threads + kExtraChunksInFlight, Math.ceil(inputs.nPoints / chunkSize)));
  // The fixed working memory: the plan at the smallest chunk, less its ring.
  const probe = budgetFor(inputs, 'streaming', smallest, ringFor(smallest));
  const ringAtSmallest = ringFor(smallest) * smallest * bytesPerPoint;
  const fixedBytes = probe.peakBytes - ringAtSmallest;
  const ringBytes = Math.max(0, probe.thresholdBytes - fixedBytes) * kRingShare;
  const inFlight = inputs.threads + kExtraChunksInFlight;
  const chunkBufferBytes = Math.min(kMaxChunkBufferBytes, ringBytes / inFlight);
  const fitted = Math.floor(chunkBufferBytes / bytesPerPoint / kBlockSize) * kBlockSize;
  const belowMinimum = fitted < smallest;
  // At least two chunks per thread, so every worker computes while the next chunk is read.
  const spread = Math.max(smallest, roundUpToBlocks(Math.ceil(inputs.nPoints / (2 * inputs.threads))));
  const chunkSize = belowMinimum ? smallest : Math.min(fitted, whole, spread);
  const chunksInFlight = ringFor(chunkSize);
  const budget = budgetFor(inputs, 'streaming', chunkSize, chunksInFlight);
  const chunkBytes = chunkSize * bytesPerPoint;
  return {
    strategy: 'streaming',
    threads: inputs.threads,
    chunkSize,
    chunksInFlight,
    budget,
    action: `${streamVerb(inputs.dataLocation)} in ${formatBytes(chunkBytes)} chunks, ${chunksInFlight} in flight`,
    belowMinimum,
  };
}

function residentPressureWarning(budget: MemoryBudget): string {
  return `; its working memory (${formatBytes(budget.workingBytes)}) exceeds ${percent(budget.safetyFactor)} of ${describeBudget(budget)}, expect memory pressure`;
}

function belowMinimumWarning(plan: Plan): string {
  return `; the budget is below what the engine needs even at the smallest chunk (${plan.chunkSize} points; predicted peak ${formatBytes(plan.budget.peakBytes)} against ${formatBytes(plan.budget.thresholdBytes)}), expect memory pressure`;
}

/**
 * Chooses the strategy, chunking and ring for a fit from its size, where its
 * data is and the memory available. Synchronous; throws TypeError/RangeError
 * for invalid options.
 */
export function decide(options: DecideOptions): Decision {
  checkSizes(options);
  const workflow = checkWorkflow(options.workflow);
  const dataLocation = checkDataLocation(options.dataLocation);
  const inputs: Inputs = {
    nPoints: options.nPoints,
    nParams: options.nParams,
    nVariables: options.nVariables,
    threads: options.threads,
    weighted: options.weighted ?? false,
    memoryLimitMb: options.memoryLimitMb,
    safetyFactor: checkSafetyFactor(options.safetyFactor),
    dataLocation,
    environment: options.environment,
  };

  let plan: Plan;
  let reason: string;
  if (workflow === 'standard' || workflow === 'chunked' || workflow === 'streaming') {
    plan = workflow === 'streaming' ? streamingPlan(inputs) : inMemoryPlan(inputs, workflow);
    const forced = `forced '${workflow}'`;
    if (plan.strategy === 'streaming') {
      reason = `${forced}: ${plan.action}` + (plan.belowMinimum ? belowMinimumWarning(plan) : '');
    } else if (dataLocation === 'memory') {
      reason = `${forced}: data (${formatBytes(plan.budget.dataBytes)}) is already in memory; ${plan.action}`;
      if (!plan.budget.fitsInMemory) reason += residentPressureWarning(plan.budget);
    } else if (plan.budget.fitsInMemory) {
      reason = `${forced}: ${fitsBudget(plan.budget)}; ${plan.action}`;
    } else {
      reason = `${forced}: ${overBudget(plan.budget)}; expect swapping or an out-of-memory kill`;
    }
  } else {
    // Every other workflow decides by memory; 'hpc' keeps even small fits on the pool.
    const poolAlways = workflow === 'hpc' || workflow === 'hpc_distributed';
    const preferred: 'standard' | 'chunked' = poolAlways ? 'chunked' : inMemoryStrategy(inputs.nPoints);
    const prefix = workflow === 'auto' ? '' : poolAlways ? `workflow '${workflow}' uses the pool at any size: ` : `workflow '${workflow}': `;
    if (dataLocation === 'memory') {
      plan = inMemoryPlan(inputs, preferred);
      const size = preferred === 'standard' ? ` and small (<= ${kInlineMaxPoints} points)` : '';
      reason = `${prefix}data (${formatBytes(plan.budget.dataBytes)}, ${inputs.nPoints} points) is already in memory${size}: ${plan.action}`;
      if (!plan.budget.fitsInMemory) reason += residentPressureWarning(plan.budget);
    } else {
      const resident = inMemoryPlan(inputs, preferred);
      if (resident.budget.fitsInMemory) {
        plan = resident;
        reason = `${prefix}${fitsBudget(plan.budget)}: ${plan.action}`;
      } else {
        plan = streamingPlan(inputs);
        reason = `${prefix}${overBudget(resident.budget)}: ${plan.action}` + (plan.belowMinimum ? belowMinimumWarning(plan) : '');
      }
    }
  }

  const { budget } = plan;
  return {
    strategy: plan.strategy,
    memoryPressure: budget.thresholdBytes > 0 ? budget.peakBytes / budget.thresholdBytes : Infinity,
    chunkSize: plan.chunkSize,
    chunksInFlight: plan.chunksInFlight,
    config: {
      threads: plan.threads,
      chunkSize: plan.chunkSize,
      chunksInFlight: plan.chunksInFlight,
      safetyFactor: budget.safetyFactor,
      thresholdBytes: budget.thresholdBytes,
      availableBytes: budget.availableBytes,
      source: budget.source,
      dataLocation,
      workflow,
    },
    budget,
    reason,
  };
}
