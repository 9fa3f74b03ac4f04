/**
 * Workflows and goals: named bundles of execution strategy and tolerances, so
 * a user can say what they want ('fast', 'quality', 'streaming') instead of
 * tuning ftol and chunk sizes. Each name does exactly what its entry here says;
 * names that need a capability this version lacks (multi-start, robust losses,
 * several nodes) are rejected with the reason, never accepted and ignored.
 *
 * Tolerances: with neither a workflow nor a goal, a fit uses the exact
 * defaults (ftol = xtol = 1e-12, gtol = 0: NIST certified digits). Naming a
 * workflow or a goal selects the tolerance table by data size below, as
 * NLSQ's users know it; 'quality' is one step tighter and 'fast' one step
 * looser. An explicit ftol, xtol or gtol always wins.
 */
import { closestName, invalidInput, invalidRange, invalidType } from './errors.js';

export const kWorkflows = [
  'auto', 'auto_global', 'standard', 'chunked', 'streaming', 'hpc',
  'quality', 'fast', 'large_robust', 'hpc_distributed',
] as const;
export type Workflow = (typeof kWorkflows)[number];

export const kGoals = ['fast', 'robust', 'global', 'quality', 'memory_efficient'] as const;
export type Goal = (typeof kGoals)[number];

/** How a workflow runs: the strategy rule and the tolerance step it applies. */
export interface WorkflowPlan {
  workflow: Workflow;
  goal: Goal | null;
  /** 'auto' decides by memory; the others force. 'hpc' = the pool at any size. */
  strategy: 'auto' | 'standard' | 'chunked' | 'streaming' | 'hpc';
  /** Steps from the size table: -1 tighter, +1 looser; null = the exact defaults. */
  toleranceStep: number | null;
  /** Keep file data in its file (stream) even when it would fit in memory. */
  preferStreaming: boolean;
  /** Run multi-start (kDefaultStarts starts) unless the multistart option says otherwise. */
  multistart: boolean;
  /** One fit across MPI ranks (distributed: 'mpi') unless the distributed option says otherwise. */
  distributed: boolean;
  /** What the bundle does, for the decision's reason and the docs. */
  description: string;
}

interface WorkflowEntry {
  strategy: WorkflowPlan['strategy'];
  toleranceStep: number;
  description: string;
  multistart?: boolean;
  distributed?: boolean;
  /** Set when the workflow needs a capability this version does not have. */
  unavailable?: string;
}

const kWorkflowTable: Record<Workflow, WorkflowEntry> = {
  auto: { strategy: 'auto', toleranceStep: 0, description: 'strategy by memory, tolerances by data size' },
  standard: { strategy: 'standard', toleranceStep: 0, description: 'calling thread, in memory; tolerances by data size' },
  chunked: { strategy: 'chunked', toleranceStep: 0, description: 'worker pool, in memory; tolerances by data size' },
  streaming: { strategy: 'streaming', toleranceStep: 0, description: 'read from the source on every pass; tolerances by data size' },
  hpc: { strategy: 'hpc', toleranceStep: 0, description: 'worker pool at any size (streaming when the data does not fit); tolerances by data size' },
  quality: { strategy: 'auto', toleranceStep: -1, description: 'strategy by memory, tolerances one step tighter than the size table' },
  fast: { strategy: 'auto', toleranceStep: 1, description: 'strategy by memory, tolerances one step looser than the size table' },
  auto_global: {
    strategy: 'auto',
    toleranceStep: 0,
    multistart: true,
    description: 'strategy by memory, tolerances by size, multi-start (8 starts unless multistart says otherwise)',
  },
  large_robust: {
    strategy: 'hpc',
    toleranceStep: 0,
    multistart: true,
    description: 'the pool (streaming when the data does not fit), tolerances by size, multi-start (8 starts); the loss stays least squares unless loss is given',
  },
  hpc_distributed: {
    strategy: 'hpc',
    toleranceStep: 0,
    distributed: true,
    description: "one fit across MPI ranks (distributed: 'mpi'), each on its pool",
  },
};

const kGoalSteps: Record<Goal, { toleranceStep: number; multistart?: boolean; unavailable?: string }> = {
  fast: { toleranceStep: 1 },
  quality: { toleranceStep: -1, multistart: true },
  memory_efficient: { toleranceStep: 0 },
  robust: { toleranceStep: 0, multistart: true },
  global: { toleranceStep: 0, multistart: true },
};

/** Starts when a workflow or goal turns multi-start on and the multistart option is not given. */
export const kDefaultStarts = 8;

/** Tolerance by data size: below 1e3 points 1e-12, below 1e4 1e-10, ..., at 1e8 and above 1e-5. */
const kSizeTable: ReadonlyArray<readonly [number, number]> = [
  [1e3, 1e-12],
  [1e4, 1e-10],
  [1e5, 1e-9],
  [1e6, 1e-8],
  [1e7, 1e-7],
  [1e8, 1e-6],
  [Infinity, 1e-5],
];

/** The table's tolerance for nPoints, moved `step` rows (negative: tighter), clamped to the table. */
export function sizeTolerance(nPoints: number, step = 0): number {
  const found = kSizeTable.findIndex(([below]) => nPoints < below);
  const row = found < 0 ? kSizeTable.length - 1 : found;
  const index = Math.min(kSizeTable.length - 1, Math.max(0, row + step));
  return kSizeTable[index]![1];
}

function pick<T extends string>(value: unknown, field: string, known: readonly T[]): T {
  if (typeof value !== 'string') throw invalidType(field, `one of ${known.map((k) => `'${k}'`).join(', ')}`, value);
  if (!(known as readonly string[]).includes(value)) {
    const close = closestName(value, known);
    throw invalidRange(field, `one of ${known.map((k) => `'${k}'`).join(', ')}${close ? ` (did you mean '${close}'?)` : ''}`, value);
  }
  return value as T;
}

/**
 * Resolves the workflow and goal options (validation lives with the other
 * options; this is called from normalizeFitOptions). `strategy` is the older,
 * narrower option: it may name the same strategy as the workflow, not another.
 */
export function resolveWorkflow(workflow: unknown, goal: unknown, strategy: unknown): WorkflowPlan {
  const named = workflow !== undefined || goal !== undefined;
  const w = workflow === undefined ? 'auto' : pick(workflow, 'workflow', kWorkflows);
  const g = goal === undefined ? null : pick(goal, 'goal', kGoals);
  const entry = kWorkflowTable[w];
  if (entry.unavailable) throw invalidInput('workflow', `'${w}' (${entry.description}) is not available: ${entry.unavailable}`);
  if (g !== null && kGoalSteps[g].unavailable) throw invalidInput('goal', `'${g}' is not available: ${kGoalSteps[g].unavailable}`);

  let plannedStrategy = entry.strategy;
  if (strategy !== undefined && strategy !== 'auto') {
    const s = pick(strategy, 'strategy', ['auto', 'standard', 'chunked', 'streaming'] as const);
    // 'hpc' runs on the pool, so it may be refined to 'chunked' or 'streaming'.
    const refines = plannedStrategy === 'hpc' && (s === 'chunked' || s === 'streaming');
    if (plannedStrategy !== 'auto' && plannedStrategy !== s && !refines) {
      throw invalidInput('strategy', `'${s}' contradicts workflow '${w}' (which runs '${plannedStrategy}'); give one of them`);
    }
    plannedStrategy = s;
  }
  const steps = entry.toleranceStep + (g === null ? 0 : kGoalSteps[g].toleranceStep);
  return {
    workflow: w,
    goal: g,
    strategy: plannedStrategy,
    toleranceStep: named ? Math.max(-1, Math.min(1, steps)) : null,
    preferStreaming: g === 'memory_efficient',
    multistart: (entry.multistart ?? false) || (g !== null && (kGoalSteps[g].multistart ?? false)),
    distributed: entry.distributed ?? false,
    description: g === null ? entry.description : `${entry.description}; goal '${g}'`,
  };
}
