// The one list of compiler flags for the addon, read by binding.gyp (node-gyp)
// and CMakeLists.txt (cmake-js) so both build paths produce the same code.
//
// -fno-math-errno/-fno-trapping-math/-fopenmp-simd let GCC vectorise the
// per-block loops and call glibc's vector math (libmvec) while keeping
// IEEE semantics (std::isnan still works, unlike with -ffast-math).
// -march=native: the addon is built from source on the machine that runs it.
// Set NLFIT_PORTABLE=1 for a build that must run on other CPUs of the same
// architecture (a shared cluster image, a prebuilt package).
//
// MPI (the optional second addon, nlfit_mpi.node, native/mpi/transport.cpp)
// is detected here too, once for both build paths:
//   mpi-found         "1" when the MPI addon is to be built, else "0"
//   mpi-cflags        its extra compile flags (-I, -D, -pthread), space-separated
//   mpi-libs          its link flags (-L, -l, -Wl,...), space-separated
//   mpi-cmake-cflags  the same, ';'-separated for CMake
//   mpi-cmake-libs
//   mpi-status        one line for people: what was found, or how to enable it
// Env NLFIT_MPI: 0/off = never build it; 1/on = required (these queries exit
// with status 1 and a message if MPI is not found, which fails the build);
// unset/auto = build it when MPI is found. MPI is found through the compiler
// wrapper (env MPICXX, else `mpicxx` on PATH): Open MPI's --showme:compile /
// --showme:link, MPICH's (and Intel MPI's) -compile_info / -link_info; else
// pkg-config (ompi-cxx, ompi, mpich). Only the C API is used, so the C++
// bindings libraries the wrappers add (-lmpi_cxx, -lmpichcxx) are dropped.
'use strict';
const { spawnSync } = require('node:child_process');

const portable = /^(1|true|yes)$/i.test(process.env.NLFIT_PORTABLE || '');
const flags = ['-O3', '-fno-math-errno', '-fno-trapping-math', '-fopenmp-simd', '-fexceptions', '-pthread', '-fno-omit-frame-pointer'];
if (!portable && (process.arch === 'x64' || process.arch === 'arm64')) flags.push('-march=native');

const enableHint =
  'to enable it, install the Open MPI or MPICH development packages (e.g. `apt install libopenmpi-dev openmpi-bin`), ' +
  'then run `npm rebuild nlfit` or `NLFIT_MPI=1 npm run build:native` (cmake-js: `npm run build:cmake`)';

/** NLFIT_MPI as 'off' | 'on' | 'auto'; anything else is a mistake worth stopping for. */
function mpiMode() {
  const raw = (process.env.NLFIT_MPI || '').trim().toLowerCase();
  if (raw === '' || raw === 'auto') return 'auto';
  if (/^(0|off|no|false)$/.test(raw)) return 'off';
  if (/^(1|on|yes|true)$/.test(raw)) return 'on';
  process.stderr.write(`nlfit: NLFIT_MPI must be 0/off, 1/on or auto (got ${JSON.stringify(process.env.NLFIT_MPI)})\n`);
  process.exit(2);
}

function capture(command, args) {
  const run = spawnSync(command, args, { encoding: 'utf8', timeout: 20_000 });
  if (run.error || run.status !== 0) return null;
  return run.stdout.trim();
}

/** Shell-like split of a wrapper's output (paths with spaces may be quoted). */
function splitWords(text) {
  const words = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let match;
  while ((match = re.exec(text))) words.push(match[1] ?? match[2] ?? match[3]);
  return words;
}

// Keeps what the addon needs from a wrapper's full command line: MPICH's
// -compile_info/-link_info print the whole command, compiler name included.
const cxxBindings = /^-l(mpi_cxx|mpichcxx|mpicxx|mpi\+\+)$/;
function compileFlags(words) {
  const out = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === '-I' || w === '-isystem' || w === '-D') {
      if (i + 1 < words.length) out.push(w === '-isystem' ? `-isystem${words[i + 1]}` : `${w}${words[i + 1]}`);
      i++;
    } else if (/^-(I|D|isystem)./.test(w) || w === '-pthread') out.push(w);
  }
  return out;
}
function linkFlags(words) {
  const out = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === '-L' || w === '-l' || w === '-Xlinker') {
      if (i + 1 < words.length) out.push(w === '-Xlinker' ? `-Wl,${words[i + 1]}` : `${w}${words[i + 1]}`);
      i++;
    } else if (cxxBindings.test(w)) continue;
    else if (/^-(L|l|Wl,)./.test(w) || w === '-pthread' || /^\/.*\.(so(\.\d+)*|a|dylib)$/.test(w)) out.push(w);
  }
  // The addon is dlopen()ed by Node: record where libmpi is, so it is found
  // at run time without LD_LIBRARY_PATH when MPI lives outside the system
  // paths (/opt/openmpi, a module system's prefix).
  for (const w of [...out]) {
    if (w.startsWith('-L')) {
      const rpath = `-Wl,-rpath,${w.slice(2)}`;
      if (!out.includes(rpath)) out.push(rpath);
    }
  }
  return out;
}

/** { found: true, how, cflags, libs } | { found: false, reason } */
function detectMpi() {
  const mode = mpiMode();
  if (mode === 'off') return { found: false, off: true, reason: 'NLFIT_MPI=0 turned it off' };
  const tried = [];
  const wrappers = process.env.MPICXX ? [process.env.MPICXX] : ['mpicxx'];
  for (const wrapper of wrappers) {
    const ompiCompile = capture(wrapper, ['--showme:compile']);
    const ompiLink = ompiCompile === null ? null : capture(wrapper, ['--showme:link']);
    if (ompiCompile !== null && ompiLink !== null) {
      const libs = linkFlags(splitWords(ompiLink));
      if (libs.some((w) => w.startsWith('-l') || w.startsWith('/'))) {
        return { found: true, how: `${wrapper} --showme (Open MPI)`, cflags: compileFlags(splitWords(ompiCompile)), libs };
      }
    }
    const mpichCompile = capture(wrapper, ['-compile_info']);
    const mpichLink = mpichCompile === null ? null : capture(wrapper, ['-link_info']);
    if (mpichCompile !== null && mpichLink !== null) {
      const libs = linkFlags(splitWords(mpichLink).slice(1));
      if (libs.some((w) => w.startsWith('-l') || w.startsWith('/'))) {
        return { found: true, how: `${wrapper} -compile_info (MPICH)`, cflags: compileFlags(splitWords(mpichCompile).slice(1)), libs };
      }
    }
    tried.push(`${wrapper} (${capture(wrapper, ['--version']) === null ? 'not found' : 'neither Open MPI --showme nor MPICH -compile_info answered'})`);
  }
  for (const pkg of ['ompi-cxx', 'ompi', 'mpich']) {
    const cflags = capture('pkg-config', ['--cflags', pkg]);
    const libs = cflags === null ? null : capture('pkg-config', ['--libs', pkg]);
    if (cflags !== null && libs !== null) {
      return { found: true, how: `pkg-config ${pkg}`, cflags: compileFlags(splitWords(cflags)), libs: linkFlags(splitWords(libs)) };
    }
  }
  tried.push('pkg-config ompi-cxx/ompi/mpich (none)');
  return { found: false, reason: `MPI not found: tried ${tried.join(', ')}` };
}

/** Detection, failing the build when NLFIT_MPI=1 asked for MPI and there is none. */
function mpi() {
  const found = detectMpi();
  if (!found.found && mpiMode() === 'on') {
    process.stderr.write(`nlfit: NLFIT_MPI=1 but ${found.reason}; install Open MPI or MPICH (e.g. \`apt install libopenmpi-dev openmpi-bin\`), set MPICXX to its C++ wrapper, or unset NLFIT_MPI\n`);
    process.exit(1);
  }
  return found;
}

const what = process.argv[2] || 'cflags';
if (what === 'cflags') process.stdout.write(flags.join(' '));
else if (what === 'cmake') process.stdout.write(flags.join(';'));
else if (what === 'napi-include') process.stdout.write(require('node-addon-api').include_dir.replace(/\\/g, '/'));
else if (what === 'node-include') {
  const path = require('path');
  const fs = require('fs');
  const local = path.resolve(process.execPath, '..', '..', 'include', 'node');
  process.stdout.write(fs.existsSync(path.join(local, 'node_api.h')) ? local : '');
} else if (what === 'mpi-found') process.stdout.write(mpi().found ? '1' : '0');
else if (what === 'mpi-cflags') process.stdout.write((mpi().cflags || []).join(' '));
else if (what === 'mpi-libs') process.stdout.write((mpi().libs || []).join(' '));
else if (what === 'mpi-cmake-cflags') process.stdout.write((mpi().cflags || []).join(';'));
else if (what === 'mpi-cmake-libs') process.stdout.write((mpi().libs || []).join(';'));
else if (what === 'mpi-status') {
  const found = mpi();
  process.stdout.write(
    found.found
      ? `nlfit: building the MPI transport (nlfit_mpi.node) with MPI from ${found.how}; NLFIT_MPI=0 skips it`
      : found.off
        ? `nlfit: not building the optional MPI transport (nlfit_mpi.node): ${found.reason} (unset NLFIT_MPI to build it when MPI is installed)`
        : `nlfit: not building the optional MPI transport (nlfit_mpi.node): ${found.reason}; ${enableHint}`,
  );
} else {
  process.stderr.write(`unknown query ${what}\n`);
  process.exit(2);
}
