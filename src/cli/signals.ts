/**
 * SIGINT (Ctrl-C) and SIGTERM (a scheduler's warning before the time limit,
 * e.g. Slurm's --signal=B:TERM@120) stop a fit cleanly: the first signal
 * aborts the AbortController whose signal the fit watches, so the fit can
 * save its checkpoint and end; a second signal exits at once. The exit code
 * is 128 + the signal number (130, 143), as a shell reports it.
 */
import { kExitSigint, kExitSigterm } from './exit.js';

export type StopSignal = 'SIGINT' | 'SIGTERM';

export const kSignalExitCodes: Record<StopSignal, number> = { SIGINT: kExitSigint, SIGTERM: kExitSigterm };

export interface Interruption {
  readonly controller: AbortController;
  /** The first signal received, or null. */
  received(): StopSignal | null;
  /** Removes the handlers (the default behaviour comes back). */
  dispose(): void;
}

/**
 * Installs the handlers. `onFirst` runs on the first signal (say what is
 * happening); the abort reason is an Error naming the signal.
 */
export function interruptOnSignals(onFirst: (signal: StopSignal) => void): Interruption {
  const controller = new AbortController();
  let first: StopSignal | null = null;
  const handle = (signal: StopSignal): void => {
    if (first !== null) process.exit(kSignalExitCodes[first]);
    first = signal;
    onFirst(signal);
    const reason = new Error(`interrupted by ${signal}`);
    reason.name = 'AbortError';
    controller.abort(reason);
  };
  const onInt = (): void => handle('SIGINT');
  const onTerm = (): void => handle('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return {
    controller,
    received: () => first,
    dispose: () => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
    },
  };
}
