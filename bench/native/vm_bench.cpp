// Microbenchmark of the model VM: evalBlock (values, exact Jacobian rows and
// residuals, into A) over 1e7 points in blocks of kBlockSize, one thread,
// for each trial in the table. Reports ns per point, best of several passes.
// The data (80 MB per column) is far larger than the caches, as in a real
// fit. A hand-written fused loop producing the same A for a*exp(-b*x)+c is
// the peer: the cheapest this block could possibly be.
//
//   g++ -std=c++17 -O3 -march=native -fno-math-errno -fno-trapping-math -fopenmp-simd
//       -Inative/kernel native/kernel/program.cpp bench/native/vm_bench.cpp
//       -o /tmp/vm_bench -lm && /tmp/vm_bench [name filter]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "program.hpp"

// glibc's vector exp for the hand-written peer, as the VM uses it.
extern "C" double exp(double) noexcept __attribute__((simd("notinbranch")));

using namespace nlfit;

namespace {

class ProgramBuilder {
 public:
  ProgramBuilder(int nParams, int nVars) : nParams_(nParams), nVars_(nVars) {}
  int param(int j) { return emit(kParam, j); }
  int var(int v) { return emit(kVar, v); }
  int emit(int32_t op, int32_t a, int32_t b = 0) {
    words_.insert(words_.end(), {op, a, b});
    return static_cast<int>(words_.size() / kInstrWords) - 1;
  }
  std::shared_ptr<const Program> build() const {
    std::vector<int32_t> c = {kMagic, kVersion, static_cast<int32_t>(words_.size() / kInstrWords), nParams_,
                              nVars_, 0};
    c.insert(c.end(), words_.begin(), words_.end());
    return Program::verify(c.data(), static_cast<int64_t>(c.size()), nullptr, 0);
  }

 private:
  int nParams_, nVars_;
  std::vector<int32_t> words_;
};

// a*exp(-b*x)+c, in the order the TypeScript compiler emits it.
std::shared_ptr<const Program> exponentialModel() {
  ProgramBuilder b(3, 1);
  int a = b.param(0), k = b.param(1), x = b.var(0);
  int e = b.emit(kExp, b.emit(kMul, b.emit(kNeg, k), x));
  int c = b.param(2);
  b.emit(kAdd, b.emit(kMul, a, e), c);
  return b.build();
}

// NIST Gauss1: b1*exp(-b2*x) + b3*exp(-(x-b4)^2/b5^2) + b6*exp(-(x-b7)^2/b8^2).
std::shared_ptr<const Program> gauss1Model() {
  ProgramBuilder b(8, 1);
  int x = b.var(0);
  int b1 = b.param(0), b2 = b.param(1);
  int sum = b.emit(kMul, b1, b.emit(kExp, b.emit(kMul, b.emit(kNeg, b2), x)));
  for (int peak = 0; peak < 2; ++peak) {
    int amp = b.param(2 + 3 * peak), mu = b.param(3 + 3 * peak), width = b.param(4 + 3 * peak);
    int num = b.emit(kNeg, b.emit(kPowi, b.emit(kSub, x, mu), 2));
    int g = b.emit(kExp, b.emit(kDiv, num, b.emit(kPowi, width, 2)));
    sum = b.emit(kAdd, sum, b.emit(kMul, amp, g));
  }
  return b.build();
}

struct Data {
  std::vector<double> x, y, sigma;
};

// One pass over all blocks; returns seconds.
using BlockRunner = std::function<double(const Data&, int64_t n, double* A, double& checksum)>;

BlockRunner vmRunner(std::shared_ptr<const Program> prog, std::vector<double> theta, bool withSigma) {
  auto ev = std::make_shared<BlockEvaluator>(prog);
  ev->setParams(theta.data());
  return [ev, withSigma](const Data& d, int64_t n, double* A, double& checksum) {
    const double* vars[1] = {d.x.data()};
    const Columns cols{vars, 1, d.y.data(), withSigma ? d.sigma.data() : nullptr};
    const auto start = std::chrono::steady_clock::now();
    for (int64_t blk = 0; blk < blockCount(n); ++blk) {
      const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - blk * kBlockSize));
      ev->evalBlock(cols, blk * kBlockSize, rows, A);
      checksum += A[blk % kBlockSize];
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
}

// The same A as the VM for a*exp(-b*x)+c without sigma, in one fused loop
// per block (full blocks only: 1e7 is not a multiple of the block size, the
// short last block is skipped).
__attribute__((noinline)) void handWrittenBlock(const double* x, const double* y, double* A, double a, double b,
                                                double c) {
  A = static_cast<double*>(__builtin_assume_aligned(A, kAlign));
#pragma omp simd
  for (int i = 0; i < kBlockSize; ++i) {
    const double e = exp(-b * x[i]);
    A[i] = e;
    A[kBlockSize + i] = -a * x[i] * e;
    A[2 * kBlockSize + i] = 1.0;
    A[3 * kBlockSize + i] = a * e + c - y[i];
  }
}

BlockRunner handWrittenRunner(std::vector<double> theta) {
  return [theta](const Data& d, int64_t n, double* A, double& checksum) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t blk = 0; blk < n / kBlockSize; ++blk) {
      handWrittenBlock(d.x.data() + blk * kBlockSize, d.y.data() + blk * kBlockSize, A, theta[0], theta[1],
                       theta[2]);
      checksum += A[blk % kBlockSize];
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
}

struct Trial {
  const char* name;
  int nParams;
  double xLo, xHi;
  std::function<BlockRunner()> runner;
};

const std::vector<double> kExpTheta = {2.0, 0.7, -0.3};
const std::vector<double> kGaussTheta = {98.778, 0.010497, 100.49, 67.481, 23.129, 71.994, 178.998, 18.389};

}  // namespace

int main(int argc, char** argv) {
  // Optional argument: run only the trials whose name contains it.
  const std::string only = argc > 1 ? argv[1] : "";
  const int64_t n = 10'000'000;
  const int passes = 5;
  const std::vector<Trial> trials = {
      {"a*exp(-b*x)+c, VM", 3, 0.0, 5.0, [] { return vmRunner(exponentialModel(), kExpTheta, false); }},
      {"a*exp(-b*x)+c, hand-written", 3, 0.0, 5.0, [] { return handWrittenRunner(kExpTheta); }},
      {"a*exp(-b*x)+c, VM, sigma", 3, 0.0, 5.0, [] { return vmRunner(exponentialModel(), kExpTheta, true); }},
      {"Gauss1 (8 params), VM", 8, 1.0, 250.0, [] { return vmRunner(gauss1Model(), kGaussTheta, false); }},
  };
  std::printf("vm_bench: n = %lld points, block = %d, single thread, best of %d passes, gcc %s\n",
              static_cast<long long>(n), kBlockSize, passes, __VERSION__);

  Data d;
  d.x.resize(n);
  d.y.resize(n);
  d.sigma.resize(n);
  for (const Trial& t : trials) {
    if (std::string(t.name).find(only) == std::string::npos) continue;
    for (int64_t i = 0; i < n; ++i) {
      d.x[i] = t.xLo + (t.xHi - t.xLo) * static_cast<double>(i) / static_cast<double>(n);
      d.y[i] = std::sin(static_cast<double>(i));
      d.sigma[i] = 1.0 + 0.5 * std::cos(static_cast<double>(i));
    }
    const BlockRunner run = t.runner();
    const std::size_t blockDoubles = static_cast<std::size_t>(kBlockSize) * (t.nParams + 1);
    double* A = static_cast<double*>(::operator new[](blockDoubles * sizeof(double), std::align_val_t(kAlign)));
    double best = 1e300, checksum = 0;
    for (int pass = 0; pass < passes; ++pass) best = std::min(best, run(d, n, A, checksum));
    ::operator delete[](A, std::align_val_t(kAlign));
    std::printf("  %-30s %6.2f ns/point  (checksum %.6g)\n", t.name, best * 1e9 / static_cast<double>(n),
                checksum);
  }
  return 0;
}
