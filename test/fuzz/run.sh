#!/usr/bin/env bash
# Fuzzes the model VM (verifier, evaluator, block reduction) for a number of
# seconds (default 60), starting from the seeds in test/fuzz/corpus/vm.
#
#   test/fuzz/run.sh [seconds]
#
# With clang++ it builds test/fuzz/vm_fuzz.cpp with libFuzzer
# (-fsanitize=fuzzer,address,undefined: coverage-guided, prints cov:);
# otherwise with g++ -fsanitize=address,undefined and the mutation driver
# test/fuzz/driver.cpp (prints executions and distinct outcomes). Exits
# non-zero on a crash, a sanitizer report, a timeout or a leak; the input
# that did it is kept in the printed artifacts directory. NLFIT_FUZZ_CXX
# picks the compiler (clang++ or g++). NLFIT_FUZZ_COVERAGE=1 (clang only) also
# builds with source-based coverage and prints, after the run, the line and
# region coverage of the kernel sources that the run's inputs reached
# (llvm-profdata, llvm-cov).
set -euo pipefail

seconds=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
seeds="$root/test/fuzz/corpus/vm"
work=$(mktemp -d "${TMPDIR:-/tmp}/nlfit-fuzz.XXXXXX")
artifacts="$work/artifacts"
mkdir -p "$artifacts" "$work/corpus" "$work/obj"
finish() {
  local status=$?
  if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "vm fuzz: failed; inputs and build kept in $work" >&2; fi
}
trap finish EXIT

# clang++ only if it can link libFuzzer (some installs lack compiler-rt).
cxx=${NLFIT_FUZZ_CXX:-}
if [ -z "$cxx" ]; then
  cxx=g++
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$work/probe.cpp"
  # clang++, or a versioned one (Debian installs clang++-14 for clang-14).
  for candidate in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -fsanitize=fuzzer,address,undefined "$work/probe.cpp" -o "$work/probe" >/dev/null 2>&1; then
      cxx=$candidate
      break
    fi
  done
fi
common=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fno-math-errno -fno-trapping-math -fopenmp-simd -march=native -Wno-psabi "-I$root/native/kernel")
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}

coverage=()
if [[ "$cxx" == clang++* ]]; then
  sanitize=(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined)
  main=(-fsanitize=fuzzer,address,undefined)
  sources=("$root/test/fuzz/vm_fuzz.cpp")
  # clang reports every 'omp simd' loop it leaves scalar at -O1: hundreds of lines of noise.
  common+=(-Wno-pass-failed)
  if [ "${NLFIT_FUZZ_COVERAGE:-0}" = 1 ]; then coverage=(-fprofile-instr-generate -fcoverage-mapping); fi
else
  sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=all)
  main=(-fsanitize=address,undefined)
  sources=("$root/test/fuzz/vm_fuzz.cpp" "$root/test/fuzz/driver.cpp")
fi

# One object per source, compiled in parallel (the sanitizers make each slow).
build_start=$(date +%s)
pids=()
objects=()
for source in "${sources[@]}" "$root"/native/kernel/*.cpp; do
  object="$work/obj/$(basename "$source" .cpp).o"
  objects+=("$object")
  "$cxx" "${common[@]}" "${sanitize[@]}" ${coverage[@]+"${coverage[@]}"} -c "$source" -o "$object" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"$cxx" "${common[@]}" "${main[@]}" ${coverage[@]+"${coverage[@]}"} "${objects[@]}" -o "$work/vm_fuzz" -lm
echo "vm fuzz: built with $cxx in $(($(date +%s) - build_start)) s; fuzzing for $seconds s" >&2

cd "$work"
if [[ "$cxx" == clang++* ]]; then
  # New inputs go to the first directory (a scratch copy), never into the seeds.
  LLVM_PROFILE_FILE="$work/fuzz.profraw" NLFIT_FUZZ_OUTCOMES=1 ./vm_fuzz -max_total_time="$seconds" -timeout=20 -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work/corpus" "$seeds"
  version=${cxx#clang++}
  if [ ${#coverage[@]} -gt 0 ] && ! command -v "llvm-profdata$version" >/dev/null; then
    echo "vm fuzz: no llvm-profdata$version, so no coverage report" >&2
  elif [ ${#coverage[@]} -gt 0 ]; then
    llvm-profdata$version merge -sparse "$work/fuzz.profraw" -o "$work/fuzz.profdata"
    echo "vm fuzz: coverage of the kernel sources by the run's inputs (llvm-cov$version report):" >&2
    llvm-cov$version report "$work/vm_fuzz" -instr-profile="$work/fuzz.profdata" "$root"/native/kernel/*.cpp "$root"/native/kernel/*.hpp >&2
  fi
else
  ./vm_fuzz -max_total_time="$seconds" -timeout=20 -max_len=4096 -print_outcomes=1 \
    -artifact_prefix="$artifacts/" "$seeds"
fi
