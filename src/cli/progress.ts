/**
 * The live progress line of `nlfit fit`, on stderr only (stdout carries the
 * result, so `--json > result.json` is never mixed with progress):
 *
 *   pass 7 | iteration 5 | cost 1.234568e+3 (-2.1e-4) | damping 3.2e-3 | 41.3M points/s | 0.84 s | RSS 312.0 MB
 *   pass 8: 42% of the data | 0.91 s | RSS 312.0 MB          (during a long pass)
 *
 * On a terminal the line is rewritten in place (\r); in 'log' mode (a batch
 * log, --progress) each update is a line of its own, at most one a second;
 * 'off' prints nothing. Memory-pressure events get a line of their own, and
 * so do checkpoint writes in a log. The cost and its relative change
 * (`| cost 1.234568e+3 (-2.1e-4)`) appear when the pass event carries the cost.
 */
import type { ProgressEvent } from '../options.js';
import { formatBytes } from '../memory/index.js';

export type ProgressMode = 'tty' | 'log' | 'off';

export interface ProgressStream {
  write(text: string): unknown;
  /** Terminal width, when the stream is a terminal. */
  columns?: number;
}

export interface ProgressOptions {
  mode: ProgressMode;
  /** Points per pass, for the throughput. */
  nPoints: number;
  /** Milliseconds between updates; default 100 on a terminal, 1000 in a log. */
  intervalMs?: number;
  /** Resident set size now, bytes. Default process.memoryUsage.rss(). */
  rss?: () => number;
  /** Clock, ms. Default performance.now(). */
  now?: () => number;
}

/** The mode for stderr: a terminal gets the live line, anything else nothing unless forced. */
export function progressMode(isTTY: boolean, quiet: boolean, forced: boolean): ProgressMode {
  if (quiet) return 'off';
  if (isTTY) return 'tty';
  return forced ? 'log' : 'off';
}

function si(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(2)}G`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(0);
}

function seconds(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 3600) > 0 ? `${Math.floor(s / 3600)}h` : ''}${String(Math.floor(s / 60) % 60).padStart(2, '0')}m${String(s % 60).padStart(2, '0')}s`;
}

export class ProgressLine {
  private readonly stream: ProgressStream;
  private readonly options: Required<Omit<ProgressOptions, 'intervalMs'>> & { intervalMs: number };
  private lastWrite = -Infinity;
  private previousElapsedMs = 0;
  private previousCost: number | null = null;
  private pending: string | null = null;
  private checkpointIteration: number | null = null;
  private passesDone = 0;
  private shown = false;

  constructor(stream: ProgressStream, options: ProgressOptions) {
    this.stream = stream;
    this.options = {
      mode: options.mode,
      nPoints: options.nPoints,
      intervalMs: options.intervalMs ?? (options.mode === 'tty' ? 100 : 1000),
      rss: options.rss ?? (() => process.memoryUsage.rss()),
      now: options.now ?? (() => performance.now()),
    };
  }

  /** The fit's onProgress. */
  readonly onEvent = (event: ProgressEvent): void => {
    if (this.options.mode === 'off') return;
    switch (event.type) {
      case 'pressure': {
        const applied = event.applied ? `; chunks now ${event.applied.chunkSize} points, ${event.applied.chunksInFlight || 'no limit on'} in flight` : '';
        this.note(`memory pressure ${event.level}: ${(event.fraction * 100).toFixed(0)}% of the budget (${event.action})${applied}`);
        return;
      }
      case 'checkpoint':
        // On a terminal the live line says it; a log gets a line per write.
        if (this.options.mode === 'log') this.note(`checkpoint ${event.path} written at iteration ${event.iteration} (${event.nfev} passes)`);
        this.checkpointIteration = event.iteration;
        return;
      case 'pass': {
        this.passesDone = event.pass;
        this.pending = this.describe(event);
        const now = this.options.now();
        if (now - this.lastWrite >= this.options.intervalMs) this.flush(now);
        return;
      }
      case 'pass-progress': {
        // A long pass shows how far it has got; short ones finish before the next update.
        if (event.fraction >= 1) return;
        this.pending = `pass ${this.passesDone + 1}: ${(event.fraction * 100).toFixed(0)}% of the data | ${seconds(event.elapsedMs)} | RSS ${formatBytes(this.options.rss())}`;
        const now = this.options.now();
        if (now - this.lastWrite >= this.options.intervalMs) this.flush(now);
        return;
      }
    }
  };

  /** A line that stays (a notice), printed above the live line. */
  note(text: string): void {
    if (this.options.mode === 'off') return;
    this.clear();
    this.stream.write(`${text}\n`);
    if (this.pending !== null && this.options.mode === 'tty') this.flush(this.options.now());
  }

  /** Shows the last update and ends the line; call once the fit is over. */
  finish(): void {
    if (this.options.mode === 'off') return;
    if (this.pending !== null) this.flush(this.options.now());
    if (this.shown && this.options.mode === 'tty') this.stream.write('\n');
    this.shown = false;
  }

  /** Removes the live line (before an error message or a signal notice). */
  clear(): void {
    if (this.shown && this.options.mode === 'tty') this.stream.write('\r\x1b[K');
    this.shown = false;
  }

  private describe(event: Extract<ProgressEvent, { type: 'pass' }>): string {
    const parts = [`pass ${event.pass}`, `iteration ${event.iteration}`];
    // The library's pass event may carry the cost of the pass's trial point.
    const cost = (event as { cost?: unknown }).cost;
    if (typeof cost === 'number') {
      const previous = this.previousCost;
      const change = previous !== null && previous !== 0 ? ` (${((cost - previous) / Math.abs(previous)).toExponential(1)})` : '';
      parts.push(`cost ${cost.toExponential(6)}${change}`);
      this.previousCost = cost;
    }
    const damping = (event as { damping?: unknown }).damping;
    if (typeof damping === 'number') parts.push(`damping ${damping.toExponential(1)}`);
    const passMs = event.elapsedMs - this.previousElapsedMs;
    this.previousElapsedMs = event.elapsedMs;
    if (passMs > 0) parts.push(`${si((this.options.nPoints / passMs) * 1000)} points/s`);
    parts.push(seconds(event.elapsedMs), `RSS ${formatBytes(this.options.rss())}`);
    if (this.checkpointIteration !== null && this.options.mode === 'tty') parts.push(`checkpoint at iteration ${this.checkpointIteration}`);
    return parts.join(' | ');
  }

  private flush(now: number): void {
    const text = this.pending;
    if (text === null) return;
    this.pending = null;
    this.lastWrite = now;
    if (this.options.mode === 'tty') {
      const width = this.stream.columns ?? 0;
      const fitted = width > 1 && text.length >= width ? text.slice(0, width - 1) : text;
      this.stream.write(`\r\x1b[K${fitted}`);
      this.shown = true;
    } else {
      this.stream.write(`${text}\n`);
    }
  }
}
