/**
 * One trial = one child process, so its peak RSS is that engine's alone. This
 * module builds each runner's command line and runs it under a time cap:
 * the clock starts when the runner says its data is loaded
 * (`{"phase":"fit-start"}`); past the cap the process is killed (its peak
 * RSS so far read from /proc first) and the trial is reported as timed out,
 * with the time it had run as a lower bound.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

/** Time allowed from spawn to fit-start on top of the cap (loading data, starting Python or workers). */
const kStartupS = 120;
/** ml-lm stops itself at the cap (after the iteration that crossed it); the kill waits this much longer. */
const kSoftCapGraceS = 30;
/** ml-lm builds the m x 1 residual as m small typed arrays: give it room rather than a heap-limit crash. */
const kMllmHeapMb = 16384;

/** The child process currently running, for the SIGINT handler. */
let active = null;

export function killActiveChild() {
  active?.kill('SIGKILL');
}

/**
 * @param {import('./trials.js').Trial} trial
 * @param {{ xPath: string, yPath: string }} data
 * @param {{ runs: number, timeoutS: number, rooflinePath: string|null }} options
 * @returns {{ command: string, args: string[], capS: number }}
 */
export function commandFor(trial, data, options) {
  const { model, n, engine } = trial;
  const job = { model: model.id, xPath: data.xPath, yPath: data.yPath, n, p0: model.p0 };
  switch (engine.runner) {
    case 'nlfit':
      return {
        command: process.execPath,
        args: [here('./runners/nlfit.js'), JSON.stringify({ ...job, threads: engine.threads, strategy: engine.strategy, runs: options.runs })],
        capS: options.timeoutS * options.runs,
      };
    case 'mllm':
      return {
        command: process.execPath,
        args: [`--max-old-space-size=${kMllmHeapMb}`, here('./runners/mllm.js'), JSON.stringify({ ...job, timeoutS: options.timeoutS, iterations: engine.iterations })],
        capS: options.timeoutS + kSoftCapGraceS,
      };
    case 'scipy':
      return { command: 'python3', args: [here('./runners/scipy_fit.py'), JSON.stringify({ ...job, method: engine.method })], capS: options.timeoutS };
    case 'roofline':
      return {
        command: options.rooflinePath,
        args: [model.id, data.xPath, data.yPath, String(n), String(engine.threads), ...model.truth.map(String)],
        capS: options.timeoutS,
      };
    default:
      throw new Error(`no runner '${engine.runner}'`);
  }
}

/**
 * Runs a runner to its result line.
 * @param {{ command: string, args: string[], capS: number }} spec
 * @returns {Promise<object>} the runner's result, or a timeout/failure record in the same shape
 */
export function runChild({ command, args, capS }) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    active = child;
    const spawned = performance.now();
    let fitStarted = null;
    let result = null;
    let killed = null;
    let stdout = '';
    let stderr = '';
    const kill = () => {
      const elapsedMs = performance.now() - (fitStarted ?? spawned);
      killed = { elapsedMs, maxRssKiB: peakRssKiB(child.pid), beforeStart: fitStarted === null };
      child.kill('SIGKILL');
    };
    let timer = setTimeout(kill, (kStartupS + capS) * 1000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      let newline;
      while ((newline = stdout.indexOf('\n')) >= 0) {
        const line = stdout.slice(0, newline).trim();
        stdout = stdout.slice(newline + 1);
        const record = parseRecord(line);
        if (record === null) continue;
        if (record.phase === 'fit-start') {
          fitStarted = performance.now();
          clearTimeout(timer);
          timer = setTimeout(kill, capS * 1000);
        } else if ('ok' in record) {
          result = record;
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    let finished = false;
    const finish = (code, signal, spawnError) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      active = null;
      if (killed) {
        const what = killed.beforeStart ? 'before its fit started' : `after ${(killed.elapsedMs / 1000).toFixed(0)} s of fitting`;
        resolve({ ok: false, timedOut: !killed.beforeStart, error: `killed ${what}`, wallMs: killed.beforeStart ? null : killed.elapsedMs, maxRssKiB: killed.maxRssKiB });
      } else if (result) {
        resolve(result);
      } else {
        const why = spawnError?.message ?? (signal ? `killed by ${signal}` : `exit code ${code}`);
        resolve({ ok: false, timedOut: false, error: `${why}${stderr ? `: ${lastLines(stderr)}` : ''}`, wallMs: null, maxRssKiB: null });
      }
    };
    child.on('error', (error) => finish(null, null, error));
    child.on('close', (code, signal) => finish(code, signal, null));
  });
}

/** Peak RSS of a running process (VmHWM, KiB), or null where /proc has none. */
function peakRssKiB(pid) {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** A runner's JSON line, or null for anything else it printed. */
function parseRecord(line) {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

function lastLines(text) {
  return text.trim().split('\n').slice(-3).join(' | ');
}
