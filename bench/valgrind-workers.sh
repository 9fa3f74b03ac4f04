#!/usr/bin/env bash
# Leak check of the addon's life in worker threads (issue 8): valgrind memcheck
# of bench/valgrind-workers.mjs, 100 workers (or $1) that each load the addon,
# verify a program, evaluate a range and exit. Exits 1 on any definitely or
# indirectly lost byte.
#
#   bench/valgrind-workers.sh [workers]
#
# valgrind cannot run AVX-512 code, so the addon is built again for this check
# without -march=native (NLFIT_PORTABLE=1, no MPI) in a temporary folder; the
# project's own build is not touched. About 30 s to build, 70 s under valgrind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
workers=${1:-100}
command -v valgrind >/dev/null || { echo "valgrind-workers: valgrind is not installed" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/nlfit-valgrind.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$root/native" "$root/binding.gyp" "$root/package.json" "$work/"
ln -s "$root/node_modules" "$work/node_modules"
(cd "$work" && NLFIT_PORTABLE=1 NLFIT_MPI=0 node native/build.cjs gyp >"$work/build.log" 2>&1) || { cat "$work/build.log" >&2; exit 1; }
NLFIT_ADDON="$work/build/Release/nlfit.node" valgrind --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --num-callers=40 \
  node "$root/bench/valgrind-workers.mjs" "$workers" 2>"$work/valgrind.log" || status=$?
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|total heap usage" "$work/valgrind.log"
if [ "${status:-0}" -ne 0 ]; then
  echo "valgrind-workers: FAIL (the report follows)" >&2
  cat "$work/valgrind.log" >&2
  exit 1
fi
echo "valgrind-workers: PASS, no byte definitely or indirectly lost over $workers workers"
