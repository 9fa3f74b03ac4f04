// Builds and runs the standalone C++ unit tests of the kernel
// (test/native/*_test.cpp) with AddressSanitizer and UBSan, so that an
// out-of-bounds access or undefined behaviour fails the suite.
//
// Every kernel source (native/kernel/*.cpp) is compiled once into an object
// and linked into every test program; each test program is one `it`, which
// passes when the program exits with 0 and its last line reports "0 failed".
// The build lives in a temporary directory outside the repository.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const kernelDir = join(root, 'native', 'kernel');
const testDir = join(root, 'test', 'native');

const compilerFlags = [
  '-std=c++17',
  '-O1',
  '-g',
  '-fsanitize=address,undefined',
  '-fno-sanitize-recover',
  '-fno-math-errno',
  '-fno-trapping-math',
  '-fopenmp-simd',
  '-march=native',
  `-I${kernelDir}`,
];
const linkLibraries = ['-lmvec', '-lm'];

// Compiling with sanitizers is slow; a test program gets this long to build
// (its own source, while the kernel objects build alongside) and to run.
const kFileTimeoutMs = 120_000;
const kRunTimeoutMs = 60_000;
const kOutputLimitBytes = 64 * 1024 * 1024;
const kShownOutputChars = 20_000;

const haveCompiler = spawnSync('g++', ['--version'], { stdio: 'ignore' }).status === 0;
const testSources = readdirSync(testDir)
  .filter((name) => name.endsWith('_test.cpp'))
  .sort();
const kernelSources = readdirSync(kernelDir)
  .filter((name) => name.endsWith('.cpp'))
  .sort();

interface Outcome {
  code: number | null;
  signal: string | null;
  stdout: string;
  /** stdout then stderr, for the failure report. */
  output: string;
}

/** Runs a program to completion; never rejects (a failure is in the outcome). */
function run(file: string, args: readonly string[], timeoutMs: number): Promise<Outcome> {
  return new Promise((resolveOutcome) => {
    execFile(
      file,
      args,
      {
        cwd: root,
        timeout: timeoutMs,
        maxBuffer: kOutputLimitBytes,
        env: { ...process.env, UBSAN_OPTIONS: process.env['UBSAN_OPTIONS'] ?? 'print_stacktrace=1' },
      },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: unknown; signal?: unknown; killed?: boolean }) | null;
        let code: number | null = 0;
        let signal: string | null = null;
        let output = `${stdout}${stderr}`;
        if (failure) {
          code = typeof failure.code === 'number' ? failure.code : null;
          signal = typeof failure.signal === 'string' ? failure.signal : null;
          if (failure.killed) output += `\n[killed after ${timeoutMs / 1000} s]`;
          if (code === null && signal === null) output += `\n[${failure.message}]`;
        }
        resolveOutcome({ code, signal, stdout, output });
      },
    );
  });
}

function describeOutcome(command: string, outcome: Outcome): string {
  const ending = outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.code}`;
  // Compiler errors in templates run to megabytes; the first ones are what matters.
  const shown =
    outcome.output.length > kShownOutputChars
      ? `${outcome.output.slice(0, kShownOutputChars)}\n[... ${outcome.output.length - kShownOutputChars} more characters]`
      : outcome.output;
  return `${command} ended with ${ending}:\n${shown}`;
}

const suiteName = haveCompiler
  ? 'native C++ unit tests (test/native/*_test.cpp, ASan + UBSan)'
  : 'native C++ unit tests: SKIPPED, g++ was not found on PATH';
if (!haveCompiler) console.warn(`${suiteName}; install g++ to build and run test/native/*_test.cpp`);

describe.skipIf(!haveCompiler)(suiteName, () => {
  let buildDir = '';
  // One compilation per kernel source, started once and shared by every test.
  let kernelObjects: Promise<{ objects: string[]; errors: string[] }>;

  beforeAll(() => {
    buildDir = mkdtempSync(join(tmpdir(), 'nlfit-native-'));
    kernelObjects = Promise.all(
      kernelSources.map(async (source) => {
        const object = join(buildDir, `kernel_${basename(source, '.cpp')}.o`);
        const outcome = await run('g++', [...compilerFlags, '-c', join(kernelDir, source), '-o', object], kFileTimeoutMs);
        return { object, error: outcome.code === 0 ? null : describeOutcome(`g++ -c native/kernel/${source}`, outcome) };
      }),
    ).then((results) => ({
      objects: results.map((r) => r.object),
      errors: results.flatMap((r) => (r.error === null ? [] : [r.error])),
    }));
  });

  afterAll(() => {
    if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  });

  it('finds test programs', () => {
    expect(testSources.length, `no *_test.cpp in ${testDir}`).toBeGreaterThan(0);
  });

  it.concurrent.each(testSources)(
    '%s builds, runs clean under the sanitizers and reports 0 failed',
    async (source) => {
      const name = basename(source, '.cpp');
      const object = join(buildDir, `${name}.o`);
      const binary = join(buildDir, name);
      const compiled = await run('g++', [...compilerFlags, '-c', join(testDir, source), '-o', object], kFileTimeoutMs);
      expect(compiled.code, describeOutcome(`g++ -c test/native/${source}`, compiled)).toBe(0);

      const kernel = await kernelObjects;
      expect(kernel.errors.length, `kernel sources do not compile:\n${kernel.errors.join('\n')}`).toBe(0);

      const linked = await run('g++', [...compilerFlags, object, ...kernel.objects, '-o', binary, ...linkLibraries], kFileTimeoutMs);
      expect(linked.code, describeOutcome(`linking ${name}`, linked)).toBe(0);

      const ran = await run(binary, [], kRunTimeoutMs);
      const report = describeOutcome(name, ran);
      expect(ran.code, report).toBe(0);
      const lastLine = ran.stdout.trimEnd().split('\n').at(-1);
      expect(lastLine, report).toMatch(/^\d+ passed, 0 failed$/);
    },
    kFileTimeoutMs + kRunTimeoutMs,
  );
});
