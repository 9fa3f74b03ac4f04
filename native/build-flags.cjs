// The one list of compiler flags for the addon, read by binding.gyp (node-gyp)
// and CMakeLists.txt (cmake-js) so both build paths produce the same code.
//
// -fno-math-errno/-fno-trapping-math/-fopenmp-simd let GCC vectorise the
// per-block loops and call glibc's vector math (libmvec) while keeping
// IEEE semantics (std::isnan still works, unlike with -ffast-math).
// -march=native: the addon is built from source on the machine that runs it.
// Set NLFIT_PORTABLE=1 for a build that must run on other CPUs of the same
// architecture (a shared cluster image, a prebuilt package).
'use strict';
const portable = /^(1|true|yes)$/i.test(process.env.NLFIT_PORTABLE || '');
const flags = ['-O3', '-fno-math-errno', '-fno-trapping-math', '-fopenmp-simd', '-fexceptions', '-pthread', '-fno-omit-frame-pointer'];
if (!portable && (process.arch === 'x64' || process.arch === 'arm64')) flags.push('-march=native');
const what = process.argv[2] || 'cflags';
if (what === 'cflags') process.stdout.write(flags.join(' '));
else if (what === 'cmake') process.stdout.write(flags.join(';'));
else if (what === 'napi-include') process.stdout.write(require('node-addon-api').include_dir.replace(/\\/g, '/'));
else if (what === 'node-include') {
  const path = require('path');
  const fs = require('fs');
  const local = path.resolve(process.execPath, '..', '..', 'include', 'node');
  process.stdout.write(fs.existsSync(path.join(local, 'node_api.h')) ? local : '');
} else {
  process.stderr.write(`unknown query ${what}\n`);
  process.exit(2);
}
