// The roofline: one pass over the data doing exactly the per-point work of an
// nlfit pass and nothing else. For each block of kBlockSize points a
// hand-written, vectorised loop writes the rows [J | f - y] (exact
// derivatives) straight into the block buffer, blockFactor reduces it, a
// RangeReducer per thread folds the block factors, and finishTree merges the
// threads' roots: the same TSQR as the engine (native/kernel/tsqr.cpp), with
// no bytecode, no pool, no JavaScript and no solver. Its pass time is the
// physical limit nlfit's pass time is compared against.
//
//   roofline <model> <x.bin> <y.bin> <n> <threads> <params...>
//
// (built and run by bench/run.js; see bench/roofline/build.js). Prints
// {"phase":"fit-start"} after loading, then one JSON line with the best and
// median pass (after one untimed pass), the residual norm at the given
// parameters and the peak RSS.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "layout.hpp"
#include "tsqr.hpp"

// glibc's vector exp (libmvec), as native/kernel/vm_ops.hpp declares it: lets
// GCC vectorise exp in `omp simd` loops without -ffast-math.
#if defined(__x86_64__) && defined(__GLIBC__)
extern "C" double exp(double) noexcept __attribute__((simd("notinbranch")));
#endif

namespace {

using nlfit::kAlign;
using nlfit::kBlockSize;

constexpr int kB = kBlockSize;

inline double* aligned(double* p) { return static_cast<double*>(__builtin_assume_aligned(p, kAlign)); }
inline const double* aligned(const double* p) {
  return static_cast<const double*>(__builtin_assume_aligned(p, kAlign));
}

// ---- the models: rows [df/dp_0 .. df/dp_{P-1} | f - y] of one full block ----
// A is column major, kBlockSize rows per column. Scalars are hoisted; what is
// left per point is what any implementation must compute.

struct Exp3 {
  static constexpr int kParams = 3;
  static void rows(const double* p, const double* x0, const double* y0, double* A0) {
    const double a = p[0], nb = -p[1], c = p[2];
    const double* x = aligned(x0);
    const double* y = y0;
    double* A = aligned(A0);
#pragma omp simd
    for (int i = 0; i < kB; ++i) {
      const double e = exp(nb * x[i]);
      A[i] = e;
      A[kB + i] = -a * x[i] * e;
      A[2 * kB + i] = 1.0;
      A[3 * kB + i] = a * e + c - y[i];
    }
  }
};

struct Dexp5 {
  static constexpr int kParams = 5;
  static void rows(const double* p, const double* x0, const double* y0, double* A0) {
    const double a1 = p[0], nb1 = -p[1], a2 = p[2], nb2 = -p[3], c = p[4];
    const double* x = aligned(x0);
    const double* y = y0;
    double* A = aligned(A0);
#pragma omp simd
    for (int i = 0; i < kB; ++i) {
      const double e1 = exp(nb1 * x[i]);
      const double e2 = exp(nb2 * x[i]);
      A[i] = e1;
      A[kB + i] = -a1 * x[i] * e1;
      A[2 * kB + i] = e2;
      A[3 * kB + i] = -a2 * x[i] * e2;
      A[4 * kB + i] = 1.0;
      A[5 * kB + i] = a1 * e1 + a2 * e2 + c - y[i];
    }
  }
};

struct Gauss5 {
  static constexpr int kParams = 5;
  static void rows(const double* p, const double* x0, const double* y0, double* A0) {
    const double a = p[0], mu = p[1], s = p[2], c0 = p[3], c1 = p[4];
    const double h = -0.5 / (s * s), as2 = a / (s * s), as3 = a / (s * s * s);
    const double* x = aligned(x0);
    const double* y = y0;
    double* A = aligned(A0);
#pragma omp simd
    for (int i = 0; i < kB; ++i) {
      const double u = x[i] - mu;
      const double g = exp(h * u * u);
      A[i] = g;
      A[kB + i] = as2 * g * u;
      A[2 * kB + i] = as3 * g * u * u;
      A[3 * kB + i] = 1.0;
      A[4 * kB + i] = x[i];
      A[5 * kB + i] = a * g + c0 + c1 * x[i] - y[i];
    }
  }
};

struct Gauss10 {
  static constexpr int kParams = 10;
  static void rows(const double* p, const double* x0, const double* y0, double* A0) {
    double mu[3], h[3], amp[3], as2[3], as3[3];
    for (int k = 0; k < 3; ++k) {
      const double s = p[3 * k + 2];
      amp[k] = p[3 * k];
      mu[k] = p[3 * k + 1];
      h[k] = -0.5 / (s * s);
      as2[k] = amp[k] / (s * s);
      as3[k] = amp[k] / (s * s * s);
    }
    const double c = p[9];
    const double* x = aligned(x0);
    const double* y = y0;
    double* A = aligned(A0);
#pragma omp simd
    for (int i = 0; i < kB; ++i) {
      double f = c;
      for (int k = 0; k < 3; ++k) {
        const double u = x[i] - mu[k];
        const double g = exp(h[k] * u * u);
        A[(3 * k) * kB + i] = g;
        A[(3 * k + 1) * kB + i] = as2[k] * g * u;
        A[(3 * k + 2) * kB + i] = as3[k] * g * u * u;
        f += amp[k] * g;
      }
      A[9 * kB + i] = 1.0;
      A[10 * kB + i] = f - y[i];
    }
  }
};

// ---- one pass ----------------------------------------------------------------

struct AlignedFree {
  void operator()(double* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }
};
using AlignedBuffer = std::unique_ptr<double[], AlignedFree>;

AlignedBuffer alignedBuffer(int64_t n) {
  return AlignedBuffer(static_cast<double*>(::operator new[](sizeof(double) * n, std::align_val_t(kAlign))));
}

// The rows of a block span one 4 KiB page per column, which hardware
// prefetchers do not cross: ask for the block after next (as the engine does).
inline void prefetchBlock(const double* column) {
  for (int offset = 0; offset < kB; offset += 8) __builtin_prefetch(column + offset, 0, 3);
}

// Reduces blocks [first, last) into packed subtree roots.
template <class Model>
std::vector<double> reduceRange(const double* p, const double* x, const double* y, int64_t n, int64_t first,
                                int64_t last) {
  constexpr int q = Model::kParams + 1;
  AlignedBuffer A = alignedBuffer(static_cast<int64_t>(q) * kB);
  AlignedBuffer xPad = alignedBuffer(kB);
  AlignedBuffer yPad = alignedBuffer(kB);
  std::vector<double> R(q * q);
  nlfit::RangeReducer reducer(q);
  for (int64_t b = first; b < last; ++b) {
    const int64_t start = b * kB;
    const int rows = static_cast<int>(std::min<int64_t>(kB, n - start));
    if (rows == kB) {
      if (start + 3 * kB <= n) {
        prefetchBlock(x + start + 2 * kB);
        prefetchBlock(y + start + 2 * kB);
      }
      Model::rows(p, x + start, y + start, A.get());
    } else {
      // The short last block: pad with the last point, then zero the padded rows.
      std::copy(x + start, x + n, xPad.get());
      std::fill(xPad.get() + rows, xPad.get() + kB, x[n - 1]);
      std::copy(y + start, y + n, yPad.get());
      std::fill(yPad.get() + rows, yPad.get() + kB, y[n - 1]);
      Model::rows(p, xPad.get(), yPad.get(), A.get());
      for (int j = 0; j < q; ++j) std::fill(A.get() + j * kB + rows, A.get() + (j + 1) * kB, 0.0);
    }
    nlfit::blockFactor(A.get(), q, R.data());
    reducer.push(b, R.data());
  }
  return reducer.packedRoots();
}

// One pass on `threads` threads started for it; writes the root factor to R.
template <class Model>
void pass(const double* p, const double* x, const double* y, int64_t n, int threads, double* R) {
  const int64_t nBlocks = nlfit::blockCount(n);
  std::vector<std::vector<double>> roots(threads);
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) {
    workers.emplace_back([&, t] {
      roots[t] = reduceRange<Model>(p, x, y, n, nBlocks * t / threads, nBlocks * (t + 1) / threads);
    });
  }
  roots[0] = reduceRange<Model>(p, x, y, n, 0, nBlocks / threads);
  for (std::thread& w : workers) w.join();
  std::vector<std::pair<const double*, int64_t>> packed;
  for (const auto& r : roots) packed.emplace_back(r.data(), static_cast<int64_t>(r.size()));
  nlfit::finishTree(packed, nBlocks, Model::kParams + 1, R);
}

// ---- the job -------------------------------------------------------------------

AlignedBuffer readColumn(const std::string& path, int64_t n) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open " + path);
  if (static_cast<int64_t>(in.tellg()) != n * 8) throw std::runtime_error(path + " does not hold n float64 values");
  in.seekg(0);
  AlignedBuffer column = alignedBuffer(n);
  in.read(reinterpret_cast<char*>(column.get()), n * 8);
  if (!in) throw std::runtime_error("cannot read " + path);
  return column;
}

// Peak RSS in KiB: VmHWM from /proc (getrusage's ru_maxrss survives fork and
// exec on Linux, so it would include the parent's memory).
long peakRssKiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

double milliseconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Times passes: one untimed, then at least 5 and until about a second is spent
// (at most 200). Best and median in ms, and the residual norm from the root.
template <class Model>
void timePasses(const std::vector<double>& p, const double* x, const double* y, int64_t n, int threads) {
  constexpr int q = Model::kParams + 1;
  std::vector<double> R(q * q);
  pass<Model>(p.data(), x, y, n, threads, R.data());
  std::vector<double> times;
  double spent = 0;
  while (times.size() < 5 || (spent < 1000 && times.size() < 200)) {
    const auto started = std::chrono::steady_clock::now();
    pass<Model>(p.data(), x, y, n, threads, R.data());
    times.push_back(milliseconds(std::chrono::steady_clock::now() - started));
    spent += times.back();
  }
  std::sort(times.begin(), times.end());
  std::printf(
      "{\"ok\":true,\"timedOut\":false,\"error\":null,\"wallMs\":%.6f,\"passMs\":%.6f,\"bestPassMs\":%.6f,"
      "\"passes\":1,\"reps\":%zu,\"residualNorm\":%.17g,\"maxRssKiB\":%ld}\n",
      times[(times.size() - 1) / 2], times[(times.size() - 1) / 2], times[0], times.size(),
      std::fabs(R[q * q - 1]), peakRssKiB());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 7) throw std::runtime_error("usage: roofline <model> <x.bin> <y.bin> <n> <threads> <params...>");
    const std::string model = argv[1];
    const int64_t n = std::stoll(argv[4]);
    const int threads = std::stoi(argv[5]);
    std::vector<double> p;
    for (int i = 6; i < argc; ++i) p.push_back(std::stod(argv[i]));
    if (n < 1 || threads < 1) throw std::runtime_error("n and threads must be positive");
    const AlignedBuffer x = readColumn(argv[2], n);
    const AlignedBuffer y = readColumn(argv[3], n);
    std::printf("{\"phase\":\"fit-start\"}\n");
    std::fflush(stdout);
    auto run = [&](auto kind) {
      using Model = decltype(kind);
      if (p.size() != Model::kParams) throw std::runtime_error("model " + model + " takes " + std::to_string(Model::kParams) + " parameters");
      timePasses<Model>(p, x.get(), y.get(), n, threads);
    };
    if (model == "exp3") run(Exp3{});
    else if (model == "dexp5") run(Dexp5{});
    else if (model == "gauss5") run(Gauss5{});
    else if (model == "gauss10") run(Gauss10{});
    else throw std::runtime_error("unknown model '" + model + "' (known: exp3, dexp5, gauss5, gauss10)");
  } catch (const std::exception& error) {
    std::string message = error.what();
    std::replace(message.begin(), message.end(), '"', '\'');
    std::printf("{\"ok\":false,\"timedOut\":false,\"error\":\"%s\"}\n", message.c_str());
    return 1;
  }
  return 0;
}
