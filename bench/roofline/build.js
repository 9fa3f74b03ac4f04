/**
 * Compiles bench/roofline/roofline.cpp with the addon's own compiler flags
 * (native/build-flags.cjs) and links it with the engine's TSQR
 * (native/kernel/tsqr.cpp), into a directory outside the repository.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

/**
 * @param {string} outDir where the executable goes
 * @returns {{ path: string, command: string }} the executable and the command that built it
 */
export function buildRoofline(outDir) {
  const flags = execFileSync(process.execPath, [join(root, 'native/build-flags.cjs'), 'cflags'], { encoding: 'utf8' })
    .trim()
    .split(/\s+/);
  const path = join(outDir, 'roofline');
  const args = [
    ...flags,
    '-std=c++17',
    `-I${join(root, 'native/kernel')}`,
    join(root, 'bench/roofline/roofline.cpp'),
    join(root, 'native/kernel/tsqr.cpp'),
    '-o',
    path,
    '-lm',
  ];
  execFileSync('g++', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  return { path, command: `g++ ${args.join(' ').replaceAll(root, '').replaceAll(outDir, '<temp dir>')}` };
}
