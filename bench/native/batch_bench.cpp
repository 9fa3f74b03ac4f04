// Throughput of the batch fitter (native/kernel/batch.hpp): many small
// independent fits, each pumped to the end in C++. For each trial in the
// table: M synthetic curves with random true parameters, every start within
// 20% of the truth (each parameter times 1 + U(-0.2, 0.2)), fitted on 1 and
// on 2 threads (std::thread, contiguous shards, as fitMany's pool does).
// Prints fits per second (best of a few passes), the mean evaluations and
// steps per fit, the share that converged, and, noise-free, the share whose
// every parameter is within 1e-6 (relative) of the truth.
//
// Solver options are fitMany's defaults (ftol = xtol = 1e-10, maxFev =
// 100 (p + 1)). Built with the addon's flags (native/build-flags.cjs):
//   g++ -std=c++17 -O3 -march=native -fno-math-errno -fno-trapping-math -fopenmp-simd -pthread
//       -Inative/kernel native/kernel/*.cpp bench/native/batch_bench.cpp -o /tmp/batch_bench -lm
//   /tmp/batch_bench [name filter] [curves]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "batch.hpp"
#include "lm.hpp"

using namespace nlfit;

namespace {

class ProgramBuilder {
 public:
  ProgramBuilder(int nParams, int nVars) : nParams_(nParams), nVars_(nVars) {}
  int param(int j) { return emit(kParam, j); }
  int var(int v) { return emit(kVar, v); }
  int constant(double c) {
    consts_.push_back(c);
    return emit(kConst, static_cast<int>(consts_.size()) - 1);
  }
  int emit(int32_t op, int32_t a, int32_t b = 0) {
    words_.insert(words_.end(), {op, a, b});
    return static_cast<int>(words_.size() / kInstrWords) - 1;
  }
  std::shared_ptr<const Program> build() const {
    std::vector<int32_t> c = {kMagic, kVersion, static_cast<int32_t>(words_.size() / kInstrWords), nParams_, nVars_,
                              static_cast<int32_t>(consts_.size())};
    c.insert(c.end(), words_.begin(), words_.end());
    return Program::verify(c.data(), static_cast<int64_t>(c.size()), consts_.data(),
                           static_cast<int64_t>(consts_.size()));
  }

 private:
  int nParams_, nVars_;
  std::vector<int32_t> words_;
  std::vector<double> consts_;
};

// a*exp(-((x1-u)^2+(x2-v)^2)/(2*s^2))+c; parameters a, u, v, s, c.
std::shared_ptr<const Program> gaussian2d() {
  ProgramBuilder b(5, 2);
  const int dx = b.emit(kPowi, b.emit(kSub, b.var(0), b.param(1)), 2);
  const int dy = b.emit(kPowi, b.emit(kSub, b.var(1), b.param(2)), 2);
  const int num = b.emit(kNeg, b.emit(kAdd, dx, dy));
  const int den = b.emit(kMul, b.constant(2.0), b.emit(kPowi, b.param(3), 2));
  const int g = b.emit(kExp, b.emit(kDiv, num, den));
  b.emit(kAdd, b.emit(kMul, b.param(0), g), b.param(4));
  return b.build();
}

// a*exp(-(x-u)^2/(2*s^2))+c; parameters a, u, s, c.
std::shared_ptr<const Program> gaussian1d() {
  ProgramBuilder b(4, 1);
  const int d = b.emit(kPowi, b.emit(kSub, b.var(0), b.param(1)), 2);
  const int den = b.emit(kMul, b.constant(2.0), b.emit(kPowi, b.param(2), 2));
  const int g = b.emit(kExp, b.emit(kDiv, b.emit(kNeg, d), den));
  b.emit(kAdd, b.emit(kMul, b.param(0), g), b.param(3));
  return b.build();
}

// splitmix64 and a Box-Muller normal: the same data on every machine.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  double uniform() {  // [0, 1)
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<double>((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
  }
  double normal() {
    const double u = 1.0 - uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
  double poisson(double mean) {  // inversion for small means, normal approximation beyond
    if (mean > 500.0) return std::max(0.0, std::round(mean + std::sqrt(mean) * normal()));
    double k = 0.0, p = std::exp(-mean), cdf = p;
    const double u = uniform();
    while (u > cdf && k < 10000.0) {
      k += 1.0;
      p *= mean / k;
      cdf += p;
    }
    return k;
  }

 private:
  uint64_t state_;
};

enum class Noise { kNone, kGaussian, kPoisson };

struct Trial {
  const char* name;
  bool twoD;
  Noise noise;
  Estimator estimator;
};

struct Batch {
  std::shared_ptr<const Program> program;
  int p = 0;
  int64_t n = 0;
  std::vector<std::vector<double>> x;
  std::vector<const double*> xPtr;
  std::vector<double> y, p0, truth;
};

Batch makeBatch(const Trial& t, int64_t m, uint64_t seed) {
  Batch b;
  Rng rng(seed);
  if (t.twoD) {
    b.program = gaussian2d();
    b.p = 5;
    b.n = 25;
    b.x.assign(2, std::vector<double>(25));
    for (int i = 0; i < 25; ++i) {
      b.x[0][i] = i % 5;
      b.x[1][i] = i / 5;
    }
  } else {
    b.program = gaussian1d();
    b.p = 4;
    b.n = 32;
    b.x.assign(1, std::vector<double>(32));
    for (int i = 0; i < 32; ++i) b.x[0][i] = i;
  }
  for (const auto& column : b.x) b.xPtr.push_back(column.data());
  b.y.resize(static_cast<std::size_t>(m * b.n));
  b.p0.resize(static_cast<std::size_t>(m * b.p));
  b.truth.resize(static_cast<std::size_t>(m * b.p));
  for (int64_t c = 0; c < m; ++c) {
    double* th = b.truth.data() + c * b.p;
    if (t.twoD) {  // a, u, v, s, c: a spot near the centre of the 5 x 5 window
      const double v[5] = {100.0 + 100.0 * rng.uniform(), 1.6 + 0.8 * rng.uniform(), 1.6 + 0.8 * rng.uniform(),
                           0.9 + 0.5 * rng.uniform(), 5.0 + 10.0 * rng.uniform()};
      std::copy(v, v + 5, th);
    } else {  // a, u, s, c: a peak in the middle of 32 samples
      const double v[4] = {100.0 + 100.0 * rng.uniform(), 13.0 + 6.0 * rng.uniform(), 2.5 + 2.0 * rng.uniform(),
                           5.0 + 10.0 * rng.uniform()};
      std::copy(v, v + 4, th);
    }
    for (int64_t i = 0; i < b.n; ++i) {
      double f;
      if (t.twoD) {
        const double dx = b.x[0][i] - th[1], dy = b.x[1][i] - th[2];
        f = th[0] * std::exp(-(dx * dx + dy * dy) / (2.0 * th[3] * th[3])) + th[4];
      } else {
        const double d = b.x[0][i] - th[1];
        f = th[0] * std::exp(-(d * d) / (2.0 * th[2] * th[2])) + th[3];
      }
      if (t.noise == Noise::kGaussian) f += rng.normal();
      if (t.noise == Noise::kPoisson) f = rng.poisson(f);
      b.y[c * b.n + i] = f;
    }
    for (int j = 0; j < b.p; ++j) b.p0[c * b.p + j] = th[j] * (1.0 + 0.2 * (2.0 * rng.uniform() - 1.0));
  }
  return b;
}

struct Output {
  std::vector<double> params, stdErrors, chi2, iterations, nfev;
  std::vector<uint8_t> status;
  explicit Output(int64_t m, int p)
      : params(m * p), stdErrors(m * p), chi2(m), iterations(m), nfev(m), status(m) {}
  BatchOutput view() {
    return {params.data(), stdErrors.data(), chi2.data(), iterations.data(), nfev.data(), status.data()};
  }
};

double fitAll(const BatchProblem& problem, int64_t m, int threads, const BatchOutput& out) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    const int64_t first = m * t / threads, last = m * (t + 1) / threads;
    workers.emplace_back([&problem, &out, first, last] { fitCurves(problem, first, last, out); });
  }
  for (std::thread& w : workers) w.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  const int64_t m = argc > 2 ? std::atoll(argv[2]) : 1'000'000;
  const int passes = 3;
  const std::vector<Trial> trials = {
      {"2-D gaussian 5x5, noise-free", true, Noise::kNone, Estimator::LeastSquares},
      {"2-D gaussian 5x5, noise sd 1", true, Noise::kGaussian, Estimator::LeastSquares},
      {"2-D gaussian 5x5, Poisson counts, MLE", true, Noise::kPoisson, Estimator::Poisson},
      {"1-D gaussian 32 pts, noise-free", false, Noise::kNone, Estimator::LeastSquares},
      {"1-D gaussian 32 pts, noise sd 1", false, Noise::kGaussian, Estimator::LeastSquares},
      {"1-D gaussian 32 pts, Poisson counts, MLE", false, Noise::kPoisson, Estimator::Poisson},
  };
  std::printf("batch_bench: %lld curves per trial, starts within 20%% of the truth, ftol = xtol = 1e-10, "
              "best of %d passes, %u hardware threads, gcc %s\n",
              static_cast<long long>(m), passes, std::thread::hardware_concurrency(), __VERSION__);
  std::printf("  %-42s %12s %12s %7s %7s %9s %9s\n", "trial", "fits/s 1 thr", "fits/s 2 thr", "nfev", "iters",
              "converged", "exact");
  for (const Trial& t : trials) {
    if (std::string(t.name).find(only) == std::string::npos) continue;
    const Batch b = makeBatch(t, m, 20240601);
    BatchProblem problem;
    problem.program = b.program;
    problem.x = b.xPtr.data();
    problem.nVars = static_cast<int>(b.xPtr.size());
    problem.y = b.y.data();
    problem.yLength = static_cast<int64_t>(b.y.size());
    problem.nCurves = m;
    problem.pointsPerCurve = b.n;
    problem.p0 = b.p0.data();
    problem.p0PerCurve = true;
    problem.estimator = t.estimator;
    problem.ftol = 1e-10;
    problem.xtol = 1e-10;
    Output out(m, b.p);
    double best[2] = {1e300, 1e300};
    for (int pass = 0; pass < passes; ++pass) {
      for (int threads = 1; threads <= 2; ++threads) {
        best[threads - 1] = std::min(best[threads - 1], fitAll(problem, m, threads, out.view()));
      }
    }
    double nfev = 0, iterations = 0;
    int64_t converged = 0, exact = 0;
    for (int64_t c = 0; c < m; ++c) {
      nfev += out.nfev[c];
      iterations += out.iterations[c];
      converged += lmSucceeded(static_cast<LMStatus>(out.status[c]));
      bool close = true;
      for (int j = 0; j < b.p; ++j) {
        const double want = b.truth[c * b.p + j];
        close &= std::fabs(out.params[c * b.p + j] - want) <= 1e-6 * std::fabs(want);
      }
      exact += close;
    }
    std::printf("  %-42s %12.0f %12.0f %7.2f %7.2f %8.3f%% ", t.name, m / best[0], m / best[1], nfev / m,
                iterations / m, 100.0 * converged / m);
    if (t.noise == Noise::kNone) std::printf("%8.3f%%\n", 100.0 * exact / m);
    else std::printf("%9s\n", "-");
  }
  return 0;
}
