#!/usr/bin/env node
// Builds the addon: `node native/build.cjs [gyp|cmake]` (gyp is what npm
// install runs), and the optional MPI addon next to it when MPI is found
// (native/build-flags.cjs; env NLFIT_MPI=0 never, NLFIT_MPI=1 required). Uses the headers of the running Node when they are installed
// next to it (as on Debian and official tarballs), so no build step needs the
// network.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tool = process.argv[2] || 'gyp';
const localHeaders = path.resolve(process.execPath, '..', '..');
const haveLocalHeaders = fs.existsSync(path.join(localHeaders, 'include', 'node', 'node_api.h'));

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.error) {
    console.error(`nlfit: could not run ${command}: ${result.error.message}`);
    process.exit(1);
  }
  process.exit(result.status === null ? 1 : result.status);
}

function resolveBin(pkg, bin) {
  try {
    return require.resolve(`${pkg}/${bin}`, { paths: [root] });
  } catch {
    return null;
  }
}

// One line on the optional MPI transport (nlfit_mpi.node, built alongside
// nlfit.node when MPI is found): what was found, or how to enable it. With
// NLFIT_MPI=1 and no MPI this fails here, before compiling anything.
if (tool === 'gyp' || tool === 'cmake') {
  const status = spawnSync(process.execPath, [path.join(__dirname, 'build-flags.cjs'), 'mpi-status'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (status.status !== 0) process.exit(status.status === null ? 1 : status.status);
  if (status.stdout) console.log(status.stdout.trim());
}

if (tool === 'gyp') {
  const args = ['rebuild'];
  if (haveLocalHeaders && !process.env.npm_config_nodedir) args.push(`--nodedir=${localHeaders}`);
  const local = resolveBin('node-gyp', 'bin/node-gyp.js') || process.env.npm_config_node_gyp;
  if (local) run(process.execPath, [local, ...args]);
  else run('node-gyp', args);
} else if (tool === 'cmake') {
  const cmakeJs = resolveBin('cmake-js', 'bin/cmake-js');
  if (!cmakeJs) {
    console.error('nlfit: cmake-js is not installed (npm install --save-dev cmake-js)');
    process.exit(1);
  }
  run(process.execPath, [cmakeJs, 'rebuild']);
} else {
  console.error(`usage: node native/build.cjs [gyp|cmake] (got '${tool}')`);
  process.exit(2);
}
