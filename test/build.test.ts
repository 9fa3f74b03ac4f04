// Both build paths (node-gyp, used by npm install; cmake-js, for sites with
// their own toolchains) must produce the same addon: the same machine code
// for every kernel object, and the same fit to the last bit; and, when MPI is
// found, both build the optional MPI addon (nlfit_mpi.node) too.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const gypObjects = join(root, 'build', 'Release', 'obj.target', 'nlfit', 'native', 'kernel');
const gypAddon = join(root, 'build', 'Release', 'nlfit.node');
const outDir = mkdtempSync(join(tmpdir(), 'nlfit-cmake-'));
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

function disassemble(file: string): string {
  const run = spawnSync('objdump', ['-d', '--no-show-raw-insn', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.status !== 0) throw new Error(run.stderr);
  return run.stdout.split('\n').slice(3).join('\n');
}

function fitWith(addon: string): string {
  const script = `
    import { fit } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
    import { readFileSync } from 'node:fs';
    const d = JSON.parse(readFileSync(${JSON.stringify(join(root, 'test/fixtures/nist/Thurber.json'))}, 'utf8'));
    const p0 = Object.fromEntries(d.params.map((p, i) => [p, d.start1[i]]));
    const r = await fit({ model: d.model, data: d.data, p0 });
    process.stdout.write(Buffer.from(r.values.buffer).toString('hex') + ' ' + r.nfev);`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, NLFIT_ADDON: addon },
  });
  if (run.status !== 0) throw new Error(run.stderr);
  return run.stdout;
}

const haveGypBuild = existsSync(gypObjects) && existsSync(gypAddon);
// Both paths also build the optional MPI addon when build-flags.cjs finds MPI.
const mpiFound =
  spawnSync(process.execPath, [join(root, 'native', 'build-flags.cjs'), 'mpi-found'], { cwd: root, encoding: 'utf8' }).stdout === '1';

describe.skipIf(!haveGypBuild)('cmake-js and node-gyp build the same addon', () => {
  it('builds with cmake-js', () => {
    const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
    const run = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', outDir], { cwd: root, encoding: 'utf8' });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(existsSync(join(outDir, 'Release', 'nlfit.node'))).toBe(true);
    expect(existsSync(join(outDir, 'Release', 'nlfit_mpi.node')), run.stdout + run.stderr).toBe(mpiFound);
  }, 180_000);

  it.skipIf(!mpiFound)('builds the MPI addon with cmake-js, as with node-gyp, and it loads', () => {
    const load = (file: string) => {
      const run = spawnSync(
        process.execPath,
        ['-e', `const a = require(${JSON.stringify(file)}); process.stdout.write([typeof a.init, typeof a.Exchange, typeof a.abort, typeof a.finalize].join())`],
        { encoding: 'utf8' },
      );
      return run.stdout + run.stderr;
    };
    expect(load(join(outDir, 'Release', 'nlfit_mpi.node'))).toBe('function,function,function,function');
    const gypMpi = join(root, 'build', 'Release', 'nlfit_mpi.node');
    if (existsSync(gypMpi)) expect(load(gypMpi)).toBe('function,function,function,function');
  });

  it('compiles every kernel source to the same machine code', () => {
    const cmakeObjects = join(outDir, 'CMakeFiles', 'nlfit.dir', 'native', 'kernel');
    const sources = readdirSync(join(root, 'native', 'kernel')).filter((f) => f.endsWith('.cpp'));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      const base = source.replace(/\.cpp$/, '');
      expect(disassemble(join(cmakeObjects, `${source}.o`)), source).toBe(disassemble(join(gypObjects, `${base}.o`)));
    }
  });

  it('fits Thurber to the same bits with either addon', () => {
    const viaGyp = fitWith(gypAddon);
    const viaCmake = fitWith(join(outDir, 'Release', 'nlfit.node'));
    expect(viaCmake).toBe(viaGyp);
  }, 60_000);
});
