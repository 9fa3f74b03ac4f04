// The nlfit command: fit from files, JSON matching the library bit for bit, job
// files, usage and data errors with their exit codes, decide, models, help,
// progress on stderr only, interruption and resume, and the resource detection.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { fit, catalogNames } from '../dist/index.js';
import { detectCpus, detectMemory, readCgroupCpus } from '../dist/cli/resources.js';
import { ProgressLine } from '../dist/cli/progress.js';
import { parseSize } from '../dist/cli/values.js';

const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'nlfit-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs nlfit with a clean Slurm-free environment (the host's job variables would change the defaults). */
function nlfit(...args: string[]) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('SLURM_')));
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000, cwd: dir, env });
}

const misra = JSON.parse(
  readFileSync(fileURLToPath(new URL('./fixtures/nist/Misra1a.json', import.meta.url)), 'utf8'),
) as { data: { x: number[]; y: number[] }; certified_values: number[] };
const csv = join(dir, 'misra1a.csv');
writeFileSync(csv, `x,y\n${misra.data.x.map((x, i) => `${x},${misra.data.y[i]}`).join('\n')}\n`);
const misraModel = 'b1*(1-exp(-b2*x))';

/** A 1-D or 2-D little-endian float64 .npy (C order). */
function writeNpy(path: string, values: Float64Array, shape: number[]): void {
  let header = `{'descr': '<f8', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const prefix = Buffer.alloc(10);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix.writeUInt8(1, 6);
  prefix.writeUInt8(0, 7);
  prefix.writeUInt16LE(header.length, 8);
  writeFileSync(path, Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(values.buffer, values.byteOffset, values.byteLength)]));
}

interface JsonResult {
  success: boolean;
  status: string;
  params: Record<string, number>;
  stderr: Record<string, number | string>;
  cost: number;
  nfev: number;
  nPoints: number;
  confidenceIntervals: Record<string, [number, number]>;
  config: Record<string, unknown>;
  run: { threads: number; threadsSource: string; exitCode: number; jobFile: string | null };
  exported: { path: string; rows: number } | null;
}

function parseResult(stdout: string): JsonResult {
  return JSON.parse(stdout) as JsonResult;
}

describe('nlfit fit', () => {
  it('fits a CSV file and prints JSON with the library result to the last bit', async () => {
    const run = nlfit('fit', csv, '--model', misraModel, '--p0', 'b1=500,b2=1e-4', '--json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const result = parseResult(run.stdout);
    expect(result.success).toBe(true);
    expect(result.nPoints).toBe(14);
    expect(result.params.b1).toBeCloseTo(misra.certified_values[0]!, 6);
    expect(result.params.b2).toBeCloseTo(misra.certified_values[1]!, 12);
    const library = await fit({ model: misraModel, data: csv, p0: { b1: 500, b2: 1e-4 } });
    for (const name of library.paramNames) {
      expect(Object.is(result.params[name], library.params[name])).toBe(true);
      expect(Object.is(result.stderr[name], library.stderr[name])).toBe(true);
    }
    expect(Object.is(result.cost, library.cost)).toBe(true);
    expect(result.nfev).toBe(library.nfev);
    expect(result.confidenceIntervals).toEqual(library.confidenceIntervals(0.95));
    expect(result.run.exitCode).toBe(0);
    expect(result.config).toMatchObject({ data: csv, model: misraModel, p0: { b1: 500, b2: 1e-4 }, json: true });
  });

  it('reads a 2-D .npy, one file per column and renamed CSV columns, with the same bits', () => {
    const n = misra.data.x.length;
    const table = new Float64Array(2 * n);
    misra.data.x.forEach((x, i) => {
      table[2 * i] = x;
      table[2 * i + 1] = misra.data.y[i]!;
    });
    writeNpy(join(dir, 'table.npy'), table, [n, 2]);
    writeNpy(join(dir, 'x.npy'), Float64Array.from(misra.data.x), [n]);
    writeFileSync(join(dir, 'y.bin'), Buffer.from(Float64Array.from(misra.data.y).buffer));
    writeFileSync(join(dir, 'renamed.csv'), `time,signal\n${misra.data.x.map((x, i) => `${x},${misra.data.y[i]}`).join('\n')}\n`);
    const reference = parseResult(nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--json').stdout);
    const runs = [
      nlfit('fit', 'table.npy', '--columns', 'x,y', '--model', misraModel, '--p0', '500,1e-4', '--json'),
      nlfit('fit', 'x=x.npy', 'y=y.bin', '--model', misraModel, '--p0', '500,1e-4', '--json'),
      nlfit('fit', 'renamed.csv', '--columns', 'x=time,y=signal', '--model', misraModel, '--p0', '500,1e-4', '--json'),
    ];
    for (const run of runs) {
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      const result = parseResult(run.stdout);
      expect(Object.is(result.params.b1, reference.params.b1)).toBe(true);
      expect(Object.is(result.params.b2, reference.params.b2)).toBe(true);
    }
  });

  it('prints a short summary by default and the full report with --report', () => {
    const summary = nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4');
    expect(summary.status).toBe(0);
    expect(summary.stdout).toMatch(/^converged \(\w+\): 2 parameters, 14 points/);
    expect(summary.stdout).toMatch(/b1 = +238\.9421 \+\/- 2\.707008 +95% CI \[233\.0441, 244\.8402\]/);
    expect(summary.stdout).not.toMatch(/\[\[Variables\]\]/);
    const report = nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--report');
    expect(report.status).toBe(0);
    expect(report.stdout).toMatch(/\[\[Variables\]\]/);
    expect(report.stdout).toMatch(/b1\s+=\s+238\.942/);
    expect(report.stdout).toMatch(/\[\[Confidence Intervals\]\] \(95%, Student t with 12 degrees of freedom\)\n\s+b1\s+= \[233\.0441, 244\.8402\]/);
    expect(report.stdout).toMatch(/\[\[Execution\]\]\n\s+strategy\s+= standard \(1 thread\): /);
    expect(report.stdout).toMatch(/\[\[Job\]\][\s\S]*threads\s+= \d+ \(/);
  });

  it('exits 1 with success false when the fit does not converge', () => {
    const run = nlfit('fit', csv, '--model', misraModel, '--p0', 'b1=500,b2=1e-4', '--max-fev', '2', '--json');
    expect(run.status).toBe(1);
    const result = parseResult(run.stdout);
    expect(result.success).toBe(false);
    expect(result.status).toBe('max_fev');
    expect(result.run.exitCode).toBe(1);
  });

  it('writes the residuals with --residuals and a plot with --plot', () => {
    const run = nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--residuals', 'res.csv.gz', '--plot', 'fit.svg', '--json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(parseResult(run.stdout).exported).toMatchObject({ rows: 14 });
    const lines = gunzipSync(readFileSync(join(dir, 'res.csv.gz'))).toString('utf8').trim().split('\n');
    expect(lines[0]).toBe('x,y,fitted,residual');
    expect(lines).toHaveLength(15);
    expect(readFileSync(join(dir, 'fit.svg'), 'utf8')).toMatch(/^<svg/);
  });

  it('keeps progress on stderr: stdout is only the JSON document', () => {
    const run = nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--json', '--progress', '--report');
    expect(run.status).toBe(0);
    expect(() => JSON.parse(run.stdout)).not.toThrow();
    expect(run.stdout).not.toMatch(/pass \d|\[\[Model\]\]/);
    expect(run.stderr).toMatch(/^nlfit: .*misra1a\.csv: 14 rows; \d+ threads? \(/);
    expect(run.stderr).toMatch(/\npass 1 \| iteration 0 \| .* points\/s \| .* \| RSS /);
    expect(run.stderr).toMatch(/\[\[Confidence Intervals\]\]/);
    const quiet = nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--json', '--progress', '--quiet');
    expect(quiet.stderr).toBe('');
  });
});

describe('job files', () => {
  it('reads every flag from JSON or YAML, with command-line flags winning, and echoes the configuration', () => {
    mkdirSync(join(dir, 'jobs'), { recursive: true });
    writeFileSync(join(dir, 'jobs', 'job.json'), JSON.stringify({ data: '../misra1a.csv', model: misraModel, p0: { b1: 500, b2: 1e-4 }, maxFev: 2, json: true }));
    writeFileSync(join(dir, 'jobs', 'job.yaml'), `data: ../misra1a.csv\nmodel: ${misraModel}\np0: [500, 1.0e-4]\nmax-fev: 2\njson: true\n`);
    for (const job of ['jobs/job.json', 'jobs/job.yaml']) {
      const limited = nlfit('fit', '--config', job);
      expect(limited.status).toBe(1);
      expect(parseResult(limited.stdout).status).toBe('max_fev');
      const overridden = nlfit('fit', '--config', job, '--max-fev', '200');
      expect(overridden.stderr).toBe('');
      expect(overridden.status).toBe(0);
      const result = parseResult(overridden.stdout);
      expect(result.success).toBe(true);
      expect(result.config).toMatchObject({ data: csv, model: misraModel, maxFev: 200, json: true });
      expect(result.run.jobFile).toBe(job);
    }
  });

  it('rejects an unknown key with a suggestion, exit 2', () => {
    writeFileSync(join(dir, 'typo.yaml'), `data: misra1a.csv\nmodle: ${misraModel}\n`);
    const run = nlfit('fit', '--config', 'typo.yaml');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/typo\.yaml: unknown key 'modle' \(did you mean 'model'\?\)/);
  });

  it('runs the echoed configuration again as a job file', () => {
    const first = parseResult(nlfit('fit', csv, '--model', misraModel, '--p0', 'b1=500,b2=1e-4', '--bounds', 'b1=0:inf', '--json').stdout);
    writeFileSync(join(dir, 'echo.json'), JSON.stringify(first.config));
    const again = parseResult(nlfit('fit', '--config', 'echo.json').stdout);
    expect(Object.is(again.params.b1, first.params.b1)).toBe(true);
  });
});

describe('usage and data errors', () => {
  it('rejects an unknown flag with a suggestion and exit code 2', () => {
    const run = nlfit('fit', csv, '--model', 'b1*x', '--p00', 'b1=1');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/unknown flag --p00 \(did you mean --p0\?\)/);
  });

  it('rejects a bad model with exit code 2 and the position', () => {
    const run = nlfit('fit', csv, '--model', 'b1*exp(', '--p0', 'b1=1');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/unexpected end/);
  });

  it('rejects bad values with exit code 2', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--p0', 'b1=abc'], /Expected a number for b1 in --p0 but received 'abc'/],
      [['--threads', '1.5'], /Expected a positive integer for --threads but received '1\.5'/],
      [['--loss', 'hubber'], /for --loss but received 'hubber' \(did you mean 'huber'\?\)/],
      [['--memory-limit', '2XB'], /Expected a size such as 512MB/],
      [['--bounds', 'b1=0'], /Expected name=lower:upper/],
      [['--residuals', 'out.txt'], /Expected a \.csv or \.csv\.gz file for --residuals/],
    ];
    for (const [flags, message] of cases) {
      const run = nlfit('fit', csv, '--model', 'b1*x', ...flags);
      expect(run.status).toBe(2);
      expect(run.stderr).toMatch(message);
    }
  });

  it('needs --model and a data file (exit 2)', () => {
    const noModel = nlfit('fit', csv, '--p0', 'b1=1');
    expect(noModel.status).toBe(2);
    expect(noModel.stderr).toMatch(/fit needs --model/);
    const noData = nlfit('fit', '--model', 'b1*x');
    expect(noData.status).toBe(2);
    expect(noData.stderr).toMatch(/fit needs a data file/);
  });

  it('refuses --plot for a model of two variables before fitting (exit 2)', () => {
    writeFileSync(join(dir, 'two.csv'), 'x1,x2,y\n1,2,3\n2,3,5\n3,5,8\n');
    const run = nlfit('fit', 'two.csv', '--model', 'a*x1+b*x2', '--p0', 'a=1,b=1', '--plot', 'two.svg');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/--plot draws models of one variable; "a\*x1\+b\*x2" reads 2 \(x1, x2\)/);
    expect(existsSync(join(dir, 'two.svg'))).toBe(false);
  });

  it('exits 3 for data that cannot be used: a value that is not a number, NaN in y, a missing file', () => {
    writeFileSync(join(dir, 'bad.csv'), 'x,y\n1,2\n2,oops\n');
    const bad = nlfit('fit', 'bad.csv', '--model', 'b1*x', '--p0', 'b1=1');
    expect(bad.status).toBe(3);
    expect(bad.stderr).toMatch(/bad\.csv line 3, column 'y': 'oops' is not a number/);
    writeFileSync(join(dir, 'nan.csv'), 'x,y\n1,2\n2,NaN\n3,4\n');
    const nan = nlfit('fit', 'nan.csv', '--model', 'b1*x', '--p0', 'b1=1');
    expect(nan.status).toBe(3);
    expect(nan.stderr).toMatch(/data\.y: value NaN at index 1 is not finite/);
    const missing = nlfit('fit', 'missing.csv', '--model', 'b1*x', '--p0', 'b1=1');
    expect(missing.status).toBe(3);
    expect(missing.stderr).toMatch(/cannot open 'missing\.csv': no such file/);
    writeFileSync(join(dir, 'noy.csv'), 'x,z\n1,2\n');
    const noY = nlfit('fit', 'noy.csv', '--model', 'b1*x', '--p0', 'b1=1');
    expect(noY.status).toBe(3);
    expect(noY.stderr).toMatch(/has no column 'y'.*--columns y=<column>/);
  });
});

describe('nlfit decide and nlfit models', () => {
  it('prints the decision and its reason, as text and JSON', () => {
    const text = nlfit('decide', '--points', '1e8', '--params', '3', '--memory-limit', '160MB', '--threads', '2');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^strategy\s+streaming\nreason\s+data \(1\.5 GB\) exceeds 75% of the 160\.0 MB limit \(memoryLimitMb\)/);
    const run = nlfit('decide', '--points', '1e8', '--params', '3', '--memory-limit', '160MB', '--threads', '2', '--json');
    expect(run.status).toBe(0);
    const decision = JSON.parse(run.stdout) as { strategy: string; reason: string; config: { threads: number; dataLocation: string }; memorySource: string };
    expect(decision.strategy).toBe('streaming');
    expect(decision.reason).toMatch(/160\.0 MB limit/);
    expect(decision.config).toMatchObject({ threads: 2, dataLocation: 'file' });
    expect(decision.memorySource).toBe('--memory-limit');
    const small = JSON.parse(nlfit('decide', '--points', '1000', '--params', '2', '--data', 'memory', '--json').stdout) as { strategy: string };
    expect(small.strategy).toBe('standard');
    const missing = nlfit('decide', '--points', '1000');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/decide needs --points N and --params P/);
    const bad = nlfit('decide', '--points', '1000', '--params', '2', '--data', 'disk');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/Expected one of file, memory, stream for --data but received 'disk'/);
  });

  it('lists every catalog model with its formula and parameter meanings', () => {
    const run = nlfit('models');
    expect(run.status).toBe(0);
    for (const name of catalogNames().filter((n) => n !== 'polynomial')) expect(run.stdout).toMatch(new RegExp(`^${name} +\\S`, 'm'));
    expect(run.stdout).toMatch(/^gaussian +a\*exp\(-\(x-mu\)\^2\/\(2\*s\^2\)\)\+c$/m);
    expect(run.stdout).toMatch(/^ +mu +centre$/m);
    expect(run.stdout).toMatch(/^polyN +c0\+c1\*x/m);
    const json = JSON.parse(nlfit('models', '--json').stdout) as Array<{ name: string; params: Array<{ name: string; meaning: string }> }>;
    expect(json.map((m) => m.name)).toEqual([...catalogNames().filter((n) => n !== 'polynomial'), 'polyN']);
    expect(json.every((m) => m.params.every((p) => p.meaning !== ''))).toBe(true);
  });
});

describe('nlfit demo, help and version', () => {
  it('runs the demo on a smaller problem', () => {
    const run = nlfit('demo', '--points', '200000');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/200,000 points/);
    expect(run.stdout).toMatch(/status\s+= \w+ \(converged\)/);
    expect(run.stdout).toMatch(/fit time: \d+ ms/);
  });

  it('prints help for every command, with examples and the exit codes, and exits 2 on an unknown command', () => {
    const main = nlfit('--help');
    expect(main.status).toBe(0);
    expect(main.stdout).toMatch(/Usage: nlfit <command>/);
    expect(main.stdout).toMatch(/Exit codes:\n\s+0 .*\n\s+1 .*\n\s+2 .*\n.*\n\s+3 .*\n\s+130 .*143/);
    const pages: Array<[string[], RegExp]> = [
      [['fit', '--help'], /--p0[\s\S]*--checkpoint[\s\S]*Examples:\n\s+nlfit fit/],
      [['help', 'fit'], /Usage: nlfit fit <data>/],
      [['decide', '--help'], /Usage: nlfit decide[\s\S]*Examples:/],
      [['models', '-h'], /Usage: nlfit models[\s\S]*Examples:/],
      [['demo', '--help'], /Usage: nlfit demo[\s\S]*Examples:/],
    ];
    for (const [args, text] of pages) {
      const run = nlfit(...args);
      expect(run.status).toBe(0);
      expect(run.stdout).toMatch(text);
    }
    const unknown = nlfit('frobnicate');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(nlfit('fitt').stderr).toMatch(/unknown command 'fitt' \(did you mean 'fit'\?\)/);
  });

  it('prints the version', () => {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string };
    expect(nlfit('--version').stdout.trim()).toBe(pkg.version);
  });
});

describe('interruption and checkpoints', () => {
  // A streaming fit (--memory-limit below the 64 MB of data) killed mid-run, by SIGTERM (exit 143, the
  // checkpoint written on the way out) and by SIGKILL (no chance to write: the last periodic checkpoint
  // must be intact); each time --resume ends with the bits of an uninterrupted run.
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`a streaming fit stopped by ${signal} mid-run resumes with --resume to the same bits`, async () => {
      const n = 4_000_000;
      if (!existsSync(join(dir, 'big-x.bin'))) {
        const x = new Float64Array(n);
        const y = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          x[i] = (5 * i) / (n - 1);
          y[i] = 5 * Math.exp(-1.3 * x[i]!) + 0.7 + 0.05 * Math.sin(12345.678 * i);
        }
        writeFileSync(join(dir, 'big-x.bin'), x);
        writeFileSync(join(dir, 'big-y.bin'), y);
      }
      const ckpt = `ckpt-${signal}/`;
      const args = ['fit', 'x=big-x.bin', 'y=big-y.bin', '--model', 'a*exp(-b*x)+c*sin(d*x)', '--p0', 'a=1,b=20,c=5,d=3', '--threads', '1', '--memory-limit', '40MB', '--json'];
      const child = spawn(process.execPath, [cli, ...args, '--checkpoint', ckpt, '--checkpoint-every', '1', '--progress'], { cwd: dir });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        // Mid-run: once periodic checkpoints exist (a log prints a line per write).
        const ready = /written at iteration 3 /.test(stderr);
        if (ready && !child.killed) child.kill(signal);
      });
      const [code, killedBy] = await new Promise<[number | null, string | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
      if (signal === 'SIGTERM') {
        expect(code, stderr).toBe(143);
        expect(stderr).toMatch(/nlfit: interrupted by SIGTERM; the checkpoint is ckpt-SIGTERM\/big-x\.ckpt: run the same command with --resume/);
      } else {
        expect(killedBy, stderr).toBe('SIGKILL');
      }
      expect(stdout).toBe('');
      expect(existsSync(join(dir, ckpt, 'big-x.ckpt'))).toBe(true);

      const resumed = nlfit(...args, '--checkpoint', ckpt, '--resume');
      expect(resumed.status, resumed.stderr).toBe(0);
      const whole = nlfit(...args);
      const a = parseResult(resumed.stdout);
      const b = parseResult(whole.stdout);
      expect(a.strategy).toBe('streaming');
      for (const name of ['a', 'b', 'c', 'd']) expect(Object.is(a.params[name], b.params[name])).toBe(true);
      expect(a.nfev).toBe(b.nfev);
    }, 60_000);
  }

  it('--resume refuses a checkpoint written for other options (exit 2) and reports the one it resumes', () => {
    const first = nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--checkpoint', 'misra.ckpt', '--checkpoint-every', '1');
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/checkpoint misra\.ckpt: started fresh, written \d+ times/);
    const other = nlfit('fit', csv, '--model', misraModel, '--p0', '400,1e-4', '--checkpoint', 'misra.ckpt', '--resume');
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/checkpoint misra\.ckpt was written for other options: p0 .* refusing to resume/);
    const same = nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--checkpoint', 'misra.ckpt', '--resume', '--json');
    expect(same.status).toBe(0);
    expect(parseResult(same.stdout).config).toMatchObject({ checkpoint: join(dir, 'misra.ckpt'), resume: true });
  });

  it('--resume without --checkpoint is a usage error', () => {
    const run = nlfit('fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--resume');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/--resume needs --checkpoint/);
  });
});

describe('resources: CPUs and memory on batch nodes', () => {
  /** A fake /sys/fs/cgroup and /proc/self/cgroup under one folder. */
  function fixture(files: Record<string, string>): { cgroupRoot: string; procSelfCgroup: string } {
    const root = mkdtempSync(join(dir, 'cgroup-'));
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(root, path, '..'), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    return { cgroupRoot: join(root, 'sys'), procSelfCgroup: join(root, 'proc-self-cgroup') };
  }

  it('reads the tightest cgroup v2 cpu.max on the way to the root, rounding down', () => {
    const paths = fixture({
      'proc-self-cgroup': '0::/job_42/step_0\n',
      'sys/cpu.max': 'max 100000\n',
      'sys/job_42/cpu.max': '350000 100000\n',
      'sys/job_42/step_0/cpu.max': 'max 100000\n',
    });
    expect(readCgroupCpus(paths)).toMatchObject({ cpus: 3, source: 'cgroup-v2' });
    expect(detectCpus({ ...paths, env: {}, affinityCpus: 8 })).toMatchObject({ cpus: 3, source: 'cgroup-v2' });
    expect(detectCpus({ ...paths, env: {}, affinityCpus: 2 })).toMatchObject({ cpus: 2, source: 'affinity' });
    expect(detectCpus({ ...paths, env: { SLURM_CPUS_PER_TASK: '1' }, affinityCpus: 8 })).toMatchObject({ cpus: 1, source: 'SLURM_CPUS_PER_TASK' });
  });

  it('reads a cgroup v1 CFS quota under the cpu,cpuacct mount; no quota (-1) and garbage count as none', () => {
    const paths = fixture({
      'proc-self-cgroup': '5:memory:/slurm/uid_1/job_7\n3:cpu,cpuacct:/slurm/uid_1/job_7\n0::/\n',
      'sys/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
      'sys/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      'sys/cpu,cpuacct/slurm/uid_1/job_7/cpu.cfs_quota_us': '400000\n',
      'sys/cpu,cpuacct/slurm/uid_1/job_7/cpu.cfs_period_us': '100000\n',
    });
    expect(detectCpus({ ...paths, env: {}, affinityCpus: 16 })).toMatchObject({ cpus: 4, source: 'cgroup-v1' });
    const none = fixture({ 'proc-self-cgroup': '0::/\n', 'sys/cpu.max': 'garbage\n' });
    expect(readCgroupCpus(none)).toBeNull();
    expect(detectCpus({ ...none, env: { SLURM_CPUS_PER_TASK: 'x' }, affinityCpus: 6 })).toMatchObject({ cpus: 6, source: 'affinity' });
    expect(readCgroupCpus({ cgroupRoot: join(dir, 'nowhere'), procSelfCgroup: join(dir, 'nowhere', 'cgroup') })).toBeNull();
  });

  it('takes memory from SLURM_MEM_PER_NODE, or SLURM_MEM_PER_CPU x CPUs, less what the process holds', () => {
    const rssBytes = 100 * 2 ** 20;
    expect(detectMemory(4, { env: { SLURM_MEM_PER_NODE: '4096' }, rssBytes })).toMatchObject({ memoryLimitMb: 3996, source: 'SLURM_MEM_PER_NODE' });
    expect(detectMemory(4, { env: { SLURM_MEM_PER_CPU: '1000', SLURM_CPUS_PER_TASK: '3' }, rssBytes })).toMatchObject({ memoryLimitMb: 2900, source: 'SLURM_MEM_PER_CPU' });
    expect(detectMemory(4, { env: { SLURM_MEM_PER_CPU: '1000' }, rssBytes })).toMatchObject({ memoryLimitMb: 3900 });
    expect(detectMemory(4, { env: {}, rssBytes })).toMatchObject({ memoryLimitMb: null, source: 'library' });
  });

  it('passes Slurm memory and CPUs to the fit (the run field says where they came from)', () => {
    const env = { ...process.env, SLURM_CPUS_PER_TASK: '1', SLURM_MEM_PER_NODE: '2048' };
    const run = spawnSync(process.execPath, [cli, 'fit', csv, '--model', misraModel, '--p0', '500,1e-4', '--json'], { encoding: 'utf8', env });
    expect(run.status).toBe(0);
    const result = JSON.parse(run.stdout) as { run: { threads: number; threadsSource: string; memoryLimitMb: number; memorySource: string } };
    expect(result.run.threads).toBe(1);
    expect(result.run.threadsSource).toMatch(/^SLURM_CPUS_PER_TASK/);
    expect(result.run.memoryLimitMb).toBeGreaterThan(1900);
    expect(result.run.memorySource).toMatch(/^SLURM_MEM_PER_NODE/);
  });
});

describe('pieces', () => {
  it('parses sizes in MB, with units as powers of 1024', () => {
    expect(parseSize('512MB', 'memory-limit')).toBe(512);
    expect(parseSize('2GB', 'memory-limit')).toBe(2048);
    expect(parseSize('1.5G', 'memory-limit')).toBe(1536);
    expect(parseSize('4096', 'memory-limit')).toBe(4096);
    expect(parseSize('64KiB', 'memory-limit')).toBe(1 / 16);
    expect(() => parseSize('2 XB', 'memory-limit')).toThrow(/Expected a size/);
  });

  it('rewrites the progress line in place on a terminal and throttles a log', () => {
    let clock = 0;
    const written: string[] = [];
    const stream = { write: (text: string) => written.push(text), columns: 200 };
    const tty = new ProgressLine(stream, { mode: 'tty', nPoints: 1e6, rss: () => 2 ** 20, now: () => clock });
    tty.onEvent({ type: 'pass', pass: 1, iteration: 0, elapsedMs: 10 });
    clock = 50;
    tty.onEvent({ type: 'pass', pass: 2, iteration: 1, elapsedMs: 20 });
    clock = 150;
    tty.onEvent({ type: 'pass', pass: 3, iteration: 2, elapsedMs: 30 });
    tty.finish();
    expect(written).toEqual([
      '\r\x1b[Kpass 1 | iteration 0 | 100.0M points/s | 0.01 s | RSS 1.0 MB',
      '\r\x1b[Kpass 3 | iteration 2 | 100.0M points/s | 0.03 s | RSS 1.0 MB',
      '\n',
    ]);
    written.length = 0;
    clock = 0;
    const log = new ProgressLine(stream, { mode: 'log', nPoints: 1e6, rss: () => 2 ** 20, now: () => clock });
    log.onEvent({ type: 'pass', pass: 1, iteration: 0, elapsedMs: 10 });
    clock = 500;
    log.onEvent({ type: 'pass', pass: 2, iteration: 1, elapsedMs: 20 });
    log.finish();
    expect(written).toEqual(['pass 1 | iteration 0 | 100.0M points/s | 0.01 s | RSS 1.0 MB\n', 'pass 2 | iteration 1 | 100.0M points/s | 0.02 s | RSS 1.0 MB\n']);
  });
});
