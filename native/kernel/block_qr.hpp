// The Householder QR of one block of rows (tsqr.hpp, blockFactor), as
// templates on the block's width: included by tsqr.cpp, which instantiates
// the kBlockSize factor every pass uses, and by tsqr_narrow.cpp, which
// instantiates the narrow widths of the batch fitter. Two translation units
// keep the kBlockSize code exactly what it is without the narrow widths.
// Internal to those two files (the helpers are in an anonymous namespace:
// each file gets its own copy); not part of the kernel's interface.
//
// Reflector convention: see tsqr.cpp.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "layout.hpp"
#include "tsqr.hpp"

namespace nlfit {
namespace {

// Sums of squares outside this range may have overflowed or lost digits to
// underflow; those columns are recomputed with scaling.
constexpr double kSumSqLow = 1e-280;
constexpr double kSumSqHigh = 1e280;
// Below this a reciprocal may overflow (1 / DBL_MIN is still finite).
constexpr double kMinSafeReciprocal = std::numeric_limits<double>::min();

// Block loops work on whole vectors of kLanes doubles (GCC/Clang vector
// extensions: AVX-512 registers with -march=native on such CPUs, pairs or
// quads of narrower registers elsewhere). Every block width is a multiple of
// kLanes and every column is kAlign-aligned, so chunk c covers rows
// [c*kLanes, (c+1)*kLanes) of every column with aligned loads and no
// remainder loop. The width is a template argument: the loops of each width
// are compiled with their trip counts known.
// The helpers below pass vectors by value; they are internal and inlined, so
// GCC's note that this ABI differs without AVX-512 concerns no real call.
#pragma GCC diagnostic ignored "-Wpsabi"
constexpr int kLanes = 8;
typedef double Vec __attribute__((vector_size(kLanes * sizeof(double))));
static_assert(kAlign % sizeof(Vec) == 0, "columns must be aligned for vector loads");

template <int Width>
constexpr int chunksOf() {
  static_assert(Width % (4 * kLanes) == 0, "block rows must fill whole groups of four vectors");
  return Width / kLanes;
}

inline Vec load(const double* p) { return *reinterpret_cast<const Vec*>(p); }
inline void store(double* p, Vec v) { *reinterpret_cast<Vec*>(p) = v; }
inline double sum(Vec v) {
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// A zero vector the optimiser cannot see is zero, to start the sums of a
// narrow block. (GCC contracts a*b + c into one fused multiply-add in C++,
// and which products it fuses decides the rounding.) A kBlockSize block sums
// its chunks in loops whose trip count depends on the column, so every
// product is added by a multiply-add to the running sum, starting with
// fma(x, x, 0).
// A narrow block's loops are short enough for GCC to peel; a peeled first
// iteration that knows the sum is 0 folds 0 + x0^2 to a plain product, and
// the next addition x0^2 + x4^2 may then be contracted the other way round,
// fma(x0, x0, x4^2), which rounds differently. Starting from a value read
// through a volatile leaves every addition as the loop does it.
inline Vec opaqueZero() {
  static volatile double zero = 0.0;
  const double z = zero;
  return Vec{} + z;
}

// Sets lanes [0, lanes) of one chunk to +0. By one vector store: scalar
// stores followed at once by the vector loads of the sweeps defeat
// store-to-load forwarding and stall each column for tens of cycles, which
// is nothing in a kBlockSize block but most of the cost of a narrow one.
inline void zeroLeadingLanes(double* chunk, int lanes) {
  typedef int64_t Mask __attribute__((vector_size(kLanes * sizeof(int64_t))));
  const Mask lane = {0, 1, 2, 3, 4, 5, 6, 7};
  const Mask keep = lane >= lanes;  // all ones where the lane is kept
  store(chunk, reinterpret_cast<Vec>(reinterpret_cast<Mask>(load(chunk)) & keep));
}

// Sum of squares of chunks [c0, chunks) of a column, four independent
// accumulators so the adds pipeline instead of waiting on each other: chunk
// c goes to accumulator (c - c0) mod 4, except that in a kBlockSize block the
// last (chunks - c0) mod 4 chunks all go to the first.
//   A narrow block holds a curve that a kBlockSize block would hold in the
// same rows followed by zero rows, and its sums must be that block's to the
// bit. In the kBlockSize block the chunks past the narrow width are zero, and
// those at the end (the only ones summed differently) are among them, so a
// narrow block sums all its chunks round-robin: the additions of nonzero
// values are the same, in the same order, and the kBlockSize block's extra
// additions of zero change nothing (a sum of squares is never -0).
template <int Width>
inline double sumOfSquares(const double* col, int c0) {
  constexpr int kChunks = chunksOf<Width>();
  Vec a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int c = c0;
  if constexpr (Width == kBlockSize) {
    for (; c + 4 <= kChunks; c += 4) {
      const Vec x0 = load(col + c * kLanes), x1 = load(col + (c + 1) * kLanes);
      const Vec x2 = load(col + (c + 2) * kLanes), x3 = load(col + (c + 3) * kLanes);
      a0 += x0 * x0;
      a1 += x1 * x1;
      a2 += x2 * x2;
      a3 += x3 * x3;
    }
    for (; c < kChunks; ++c) {
      const Vec x = load(col + c * kLanes);
      a0 += x * x;
    }
  } else {
    a0 = a1 = a2 = a3 = opaqueZero();
    for (; c + 4 <= kChunks; c += 4) {
      const Vec x0 = load(col + c * kLanes), x1 = load(col + (c + 1) * kLanes);
      const Vec x2 = load(col + (c + 2) * kLanes), x3 = load(col + (c + 3) * kLanes);
      a0 += x0 * x0;
      a1 += x1 * x1;
      a2 += x2 * x2;
      a3 += x3 * x3;
    }
    // The last chunks continue the round robin. (Each is its own multiply-add:
    // chunks selected as values, zero past the end, compile to branches
    // that keep the multiply and the add apart.)
    if (c < kChunks) {
      const Vec x = load(col + c * kLanes);
      a0 += x * x;
    }
    if (c + 1 < kChunks) {
      const Vec x = load(col + (c + 1) * kLanes);
      a1 += x * x;
    }
    if (c + 2 < kChunks) {
      const Vec x = load(col + (c + 2) * kLanes);
      a2 += x * x;
    }
  }
  return sum((a0 + a1) + (a2 + a3));
}

// One Householder step on the trailing columns: the reflector u (stored over
// v, u_k = 1) is formed from v in the same sweep that accumulates u . c_j for
// every trailing column j, then a second sweep applies c_j -= tau (u . c_j) u.
// N trailing columns; N > 0 is a compile-time count (accumulators stay in
// registers) and N = 0 means "n at run time". Zero rows past a narrow
// block's width would add exact zeros to each dot product and leave every
// column unchanged, so every width gives the same factor of the same rows.
template <int Width, int N>
void applyReflector(double* v, double* const* cols, int n, int k, double scale, bool divide, double tau,
                    double* rowOut) {
  constexpr int kChunks = chunksOf<Width>();
  constexpr int kMax = N > 0 ? N : kMaxFactorColumns;
  const int count = N > 0 ? N : n;
  const int c0 = k / kLanes;
  const int lane = k % kLanes;
  Vec acc[kMax];
  if constexpr (Width == kBlockSize) {
    for (int j = 0; j < count; ++j) acc[j] = Vec{};
  } else {
    const Vec zero = opaqueZero();  // see opaqueZero
    for (int j = 0; j < count; ++j) acc[j] = zero;
  }
  for (int c = c0; c < kChunks; ++c) {
    const Vec x = load(v + c * kLanes);
    Vec u = divide ? x / scale : x * scale;
    if (c == c0) u[lane] = 1.0;  // rows [c0*kLanes, k) of v were zeroed by the caller
    store(v + c * kLanes, u);
    for (int j = 0; j < count; ++j) acc[j] += u * load(cols[j] + c * kLanes);
  }
  double f[kMax];
  for (int j = 0; j < count; ++j) f[j] = tau * sum(acc[j]);
  for (int c = c0; c < kChunks; ++c) {
    const Vec u = load(v + c * kLanes);
    for (int j = 0; j < count; ++j) store(cols[j] + c * kLanes, load(cols[j] + c * kLanes) - f[j] * u);
  }
  for (int j = 0; j < count; ++j) rowOut[j] = cols[j][k];
}

using ReflectorStep = void (*)(double*, double* const*, int, int, double, bool, double, double*);
template <int Width>
constexpr ReflectorStep kReflectorSteps[] = {
    applyReflector<Width, 0>, applyReflector<Width, 1>, applyReflector<Width, 2>,
    applyReflector<Width, 3>, applyReflector<Width, 4>, applyReflector<Width, 5>,
    applyReflector<Width, 6>, applyReflector<Width, 7>, applyReflector<Width, 8>};

}  // namespace

// The factor of a block of Width rows (blockFactor), inlined into the one
// function per width that calls it. Outside the anonymous namespace: with
// internal linkage GCC allocates registers differently in the kBlockSize
// factor (and even in mergeFactors), and the point of the two translation
// units is that it compiles to the code it always had. Each width is
// instantiated in one of the two files only, and always inlined, so the
// helpers it calls (internal to each file) are never mixed up.
template <int Width>
__attribute__((always_inline)) inline void blockFactorAt(double* A, int q, double* R) {
  std::memset(R, 0, sizeof(double) * q * q);
  double* cols[kMaxFactorColumns];
  for (int k = 0; k < q; ++k) {
    double* v = static_cast<double*>(__builtin_assume_aligned(A + static_cast<int64_t>(k) * Width, kAlign));
    // Rows above k in this column are R entries already copied out; zero the
    // ones that share a vector with row k so whole-vector sweeps ignore them.
    if constexpr (Width == kBlockSize) {
      for (int i = (k / kLanes) * kLanes; i < k; ++i) v[i] = 0.0;
    } else {
      zeroLeadingLanes(v + (k / kLanes) * kLanes, k % kLanes);
    }
    const double x0 = v[k];
    double s = 0.0;
    const double sumSq = sumOfSquares<Width>(v, k / kLanes);
    if (sumSq >= kSumSqLow && sumSq <= kSumSqHigh) {
      s = std::sqrt(sumSq);
    } else {
      s = stableNorm(v + k, Width - k);
    }
    if (s == 0.0) {
      for (int j = k; j < q; ++j) R[k * q + j] = A[static_cast<int64_t>(j) * Width + k];
      continue;
    }
    const double beta = x0 >= 0.0 ? -s : s;
    const double v0 = x0 - beta;
    // u = v / v0 with |v0| >= s > 0 and tau = 1 + |x0|/s in [1, 2]: every
    // product stays at the scale of one column entry. Multiplying by the
    // reciprocal is several times cheaper than dividing; only a subnormal v0,
    // whose reciprocal overflows, divides.
    const double tau = 1.0 + std::fabs(x0) / s;
    const int trailing = q - k - 1;
    if (trailing > 0) {
      for (int j = 0; j < trailing; ++j) cols[j] = A + static_cast<int64_t>(k + 1 + j) * Width;
      const bool divide = std::fabs(v0) < kMinSafeReciprocal;
      const double scale = divide ? v0 : 1.0 / v0;
      constexpr int kSteps = static_cast<int>(sizeof kReflectorSteps<Width> / sizeof kReflectorSteps<Width>[0]);
      const ReflectorStep step = trailing < kSteps ? kReflectorSteps<Width>[trailing] : kReflectorSteps<Width>[0];
      step(v, cols, trailing, k, scale, divide, tau, R + k * q + k + 1);
    }
    R[k * q + k] = beta;
  }
}

}  // namespace nlfit
