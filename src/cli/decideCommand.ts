/**
 * `nlfit decide`: the memory coordinator's decision for a fit of a given
 * size on this machine (threads and memory detected as `nlfit fit` does),
 * with its reason and arithmetic. Nothing is fitted.
 */
import { decide, formatBytes } from '../memory/index.js';
import { kWorkflows, type Workflow } from '../workflow.js';
import { parseArgs, type FlagTable } from './args.js';
import { UsageError } from './exit.js';
import type { CommandIo } from './fitCommand.js';
import { parseMemoryLimit } from './fitFlags.js';
import { kDecideHelp } from './help.js';
import { toJson } from './report.js';
import { detectCpus, detectMemory } from './resources.js';
import { parseChoice, parseInteger } from './values.js';

const kDataLocations = ['file', 'memory', 'stream'] as const;

const kDecideFlags: FlagTable = {
  points: { parse: (text, flag) => parseInteger(text, flag) },
  params: { parse: (text, flag) => parseInteger(text, flag) },
  variables: { parse: (text, flag) => parseInteger(text, flag, 0) },
  weighted: {},
  data: { parse: (text, flag) => parseChoice(text, flag, kDataLocations) },
  workflow: { parse: (text, flag) => parseChoice(text, flag, kWorkflows) },
  'memory-limit': { parse: parseMemoryLimit },
  threads: { parse: (text, flag) => parseInteger(text, flag) },
  json: {},
  help: {},
};

export function commandDecide(argv: readonly string[], io: CommandIo): number {
  const { positionals, values } = parseArgs(argv, kDecideFlags);
  if (values.get('help') === true) {
    io.out(kDecideHelp);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`decide takes no arguments (got '${positionals[0]}'); give sizes as --points N --params P`);
  const nPoints = values.get('points') as number | undefined;
  const nParams = values.get('params') as number | undefined;
  if (nPoints === undefined || nParams === undefined) throw new UsageError('decide needs --points N and --params P');
  const cpus = detectCpus();
  const threads = (values.get('threads') as number | undefined) ?? cpus.cpus;
  const given = values.get('memory-limit') as number | undefined;
  const detected = given === undefined ? detectMemory(cpus.cpus) : null;
  const memoryLimitMb = given ?? detected?.memoryLimitMb ?? undefined;
  const decision = decide({
    nPoints,
    nParams,
    nVariables: (values.get('variables') as number | undefined) ?? 1,
    threads,
    weighted: values.get('weighted') === true,
    workflow: (values.get('workflow') as Workflow | undefined) ?? 'auto',
    dataLocation: (values.get('data') as (typeof kDataLocations)[number] | undefined) ?? 'file',
    ...(memoryLimitMb === undefined ? {} : { memoryLimitMb }),
  });
  const threadsSource = values.has('threads') ? '--threads' : `${cpus.source}: ${cpus.detail}`;
  const memorySource = given !== undefined ? '--memory-limit' : detected!.memoryLimitMb !== null ? `${detected!.source}: ${detected!.detail}` : decision.config.source;
  if (values.get('json') === true) {
    io.out(toJson({ ...decision, threadsSource, memorySource }));
    return 0;
  }
  const b = decision.budget;
  io.out(
    [
      `strategy        ${decision.strategy}`,
      `reason          ${decision.reason}`,
      `threads         ${decision.config.threads} (${threadsSource})`,
      `chunks          ${decision.chunkSize} points${decision.chunksInFlight > 0 ? `, ${decision.chunksInFlight} in flight` : ''}`,
      `memory          predicted peak ${formatBytes(b.peakBytes)} of ${formatBytes(b.thresholdBytes)} usable ` +
        `(${Math.round(decision.config.safetyFactor * 100)}% of ${formatBytes(b.availableBytes)} available: ${memorySource})`,
      `data            ${formatBytes(b.dataBytes)} (${decision.config.dataLocation}), working memory ${formatBytes(b.workingBytes)}`,
    ].join('\n'),
  );
  return 0;
}
