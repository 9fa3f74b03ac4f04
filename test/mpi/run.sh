#!/usr/bin/env bash
# CI: the MPI transport's tests (test/mpi.test.ts runs test/mpi/*.mjs under
# mpirun). Needs mpirun and MPI's development files (for nlfit_mpi.node); when
# either is missing and this runs as root with apt-get, installs Open MPI
# (openmpi-bin libopenmpi-dev). If MPI is still unavailable, prints
#   SKIP: MPI tests: <reason>
# and exits 0. Else rebuilds the addons (node-gyp: nlfit.node and
# nlfit_mpi.node), compiles the TypeScript and runs the tests.
#   test/mpi/run.sh            (from anywhere)
# Env: NLFIT_MPI_INSTALL=0 never installs anything.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Open MPI refuses to run as root without these (CI containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

mpi_ready() {
  command -v mpirun >/dev/null 2>&1 && [ "$(NLFIT_MPI= node native/build-flags.cjs mpi-found 2>/dev/null)" = "1" ]
}

missing_reason() {
  if ! command -v mpirun >/dev/null 2>&1; then
    echo "mpirun not found"
  else
    NLFIT_MPI= node native/build-flags.cjs mpi-status 2>&1 | sed 's/^nlfit: //'
  fi
}

if ! mpi_ready; then
  reason="$(missing_reason)"
  if [ "${NLFIT_MPI_INSTALL:-1}" = "0" ]; then
    echo "SKIP: MPI tests: $reason (NLFIT_MPI_INSTALL=0: not installing Open MPI)"
    exit 0
  fi
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "SKIP: MPI tests: $reason (and cannot install Open MPI here: needs root and apt-get)"
    exit 0
  fi
  echo "MPI tests: $reason; installing Open MPI with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  install() { timeout 600 apt-get install -y --no-install-recommends openmpi-bin libopenmpi-dev; }
  if ! install; then
    # A fresh container may have no package lists yet.
    timeout 300 apt-get update || true
    install || true
  fi
  hash -r
  if ! mpi_ready; then
    echo "SKIP: MPI tests: $(missing_reason) (installing Open MPI failed)"
    exit 0
  fi
fi

echo "MPI tests: $(mpirun --version 2>&1 | head -n 1)"
# Rebuild so nlfit_mpi.node exists (NLFIT_MPI=1: a failure to build it fails
# here rather than skipping the tests), then the JavaScript the tests import.
NLFIT_MPI=1 node native/build.cjs gyp
npx tsc -p tsconfig.json

# NLFIT_MPI_TESTS_REQUIRED: test/mpi.test.ts fails instead of skipping when
# mpirun or the addon is missing.
export NLFIT_MPI_TESTS_REQUIRED=1
mpi_tests=(
  test/mpi.test.ts
  test/mpi-fit.test.ts
)
npx vitest run "${mpi_tests[@]}"
