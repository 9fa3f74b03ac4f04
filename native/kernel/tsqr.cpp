// Householder QR of row blocks and the fixed-tree merge of their factors.
// See tsqr.hpp for the mathematics and the reproducibility argument.
//
// Reflector convention: for a column x with norm s, beta = -sign(x0) s and
// v = x - beta e1 (the sign of beta opposite to x0 avoids cancellation in
// v0 = x0 - beta). With u = v / v0 (u0 = 1), H = I - tau u u^T where
// tau = v0^2 / (s (s + |x0|)) = 1 + |x0| / s lies in [1, 2]. Normalising by
// v0 keeps every product at the scale of one column entry, so columns near
// the overflow or underflow thresholds (1e+-200) factor without NaN.
#include "tsqr.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>

namespace nlfit {

namespace {

// Sums of squares outside this range may have overflowed or lost digits to
// underflow; those columns are recomputed with scaling.
constexpr double kSumSqLow = 1e-280;
constexpr double kSumSqHigh = 1e280;
// Below this a reciprocal may overflow (1 / DBL_MIN is still finite).
constexpr double kMinSafeReciprocal = std::numeric_limits<double>::min();

}  // namespace

double stableNorm(const double* x, int64_t n, int64_t stride) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i * stride] * x[i * stride];
  if (sum >= kSumSqLow && sum <= kSumSqHigh) return std::sqrt(sum);
  if (std::isnan(sum)) return sum;
  double scale = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::fabs(x[i * stride]);
    if (!(a <= scale)) scale = a;  // also picks up NaN
  }
  if (scale == 0.0 || !std::isfinite(scale)) return scale;
  double scaled = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double t = x[i * stride] / scale;
    scaled += t * t;
  }
  return scale * std::sqrt(scaled);
}

namespace {

// Block loops work on whole vectors of kLanes doubles (GCC/Clang vector
// extensions: AVX-512 registers with -march=native on such CPUs, pairs or
// quads of narrower registers elsewhere). kBlockSize is a multiple of kLanes
// and every column is kAlign-aligned, so chunk c covers rows [c*kLanes,
// (c+1)*kLanes) of every column with aligned loads and no remainder loop.
// The helpers below pass vectors by value; they are internal and inlined, so
// GCC's note that this ABI differs without AVX-512 concerns no real call.
#pragma GCC diagnostic ignored "-Wpsabi"
constexpr int kLanes = 8;
constexpr int kChunks = kBlockSize / kLanes;
typedef double Vec __attribute__((vector_size(kLanes * sizeof(double))));
static_assert(kBlockSize % kLanes == 0, "block rows must fill whole vectors");
static_assert(kAlign % sizeof(Vec) == 0, "columns must be aligned for vector loads");

inline Vec load(const double* p) { return *reinterpret_cast<const Vec*>(p); }
inline void store(double* p, Vec v) { *reinterpret_cast<Vec*>(p) = v; }
inline double sum(Vec v) {
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// Sum of squares of chunks [c0, kChunks) of a column, four independent
// accumulators so the adds pipeline instead of waiting on each other.
inline double sumOfSquares(const double* col, int c0) {
  Vec a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int c = c0;
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
  return sum((a0 + a1) + (a2 + a3));
}

// One Householder step on the trailing columns: the reflector u (stored over
// v, u_k = 1) is formed from v in the same sweep that accumulates u . c_j for
// every trailing column j, then a second sweep applies c_j -= tau (u . c_j) u.
// N trailing columns; N > 0 is a compile-time count (accumulators stay in
// registers) and N = 0 means "n at run time".
template <int N>
void applyReflector(double* v, double* const* cols, int n, int k, double scale, bool divide, double tau,
                    double* rowOut) {
  constexpr int kMax = N > 0 ? N : kMaxFactorColumns;
  const int count = N > 0 ? N : n;
  const int c0 = k / kLanes;
  const int lane = k % kLanes;
  Vec acc[kMax];
  for (int j = 0; j < count; ++j) acc[j] = Vec{};
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
constexpr ReflectorStep kReflectorSteps[] = {applyReflector<0>, applyReflector<1>, applyReflector<2>,
                                             applyReflector<3>, applyReflector<4>, applyReflector<5>,
                                             applyReflector<6>, applyReflector<7>, applyReflector<8>};

}  // namespace

void blockFactor(double* A, int q, double* R) {
  std::memset(R, 0, sizeof(double) * q * q);
  double* cols[kMaxFactorColumns];
  for (int k = 0; k < q; ++k) {
    double* v = static_cast<double*>(__builtin_assume_aligned(A + static_cast<int64_t>(k) * kBlockSize, kAlign));
    // Rows above k in this column are R entries already copied out; zero the
    // ones that share a vector with row k so whole-vector sweeps ignore them.
    for (int i = (k / kLanes) * kLanes; i < k; ++i) v[i] = 0.0;
    const double x0 = v[k];
    double s = 0.0;
    const double sumSq = sumOfSquares(v, k / kLanes);
    if (sumSq >= kSumSqLow && sumSq <= kSumSqHigh) {
      s = std::sqrt(sumSq);
    } else {
      s = stableNorm(v + k, kBlockSize - k);
    }
    if (s == 0.0) {
      for (int j = k; j < q; ++j) R[k * q + j] = A[static_cast<int64_t>(j) * kBlockSize + k];
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
      for (int j = 0; j < trailing; ++j) cols[j] = A + static_cast<int64_t>(k + 1 + j) * kBlockSize;
      const bool divide = std::fabs(v0) < kMinSafeReciprocal;
      const double scale = divide ? v0 : 1.0 / v0;
      const ReflectorStep step = trailing < static_cast<int>(sizeof kReflectorSteps / sizeof kReflectorSteps[0])
                                     ? kReflectorSteps[trailing]
                                     : kReflectorSteps[0];
      step(v, cols, trailing, k, scale, divide, tau, R + k * q + k + 1);
    }
    R[k * q + k] = beta;
  }
}

void mergeFactors(double* R1, double* R2, int q) {
  for (int k = 0; k < q; ++k) {
    // The column to annihilate: R1[k][k] over R2[0..k][k]. A plain sum of
    // squares, with the scaled norm only when it may have over- or
    // underflowed (this runs about once per block, so hypot's cost showed).
    const double x0 = R1[k * q + k];
    double sumSq = x0 * x0;
    for (int i = 0; i <= k; ++i) sumSq += R2[i * q + k] * R2[i * q + k];
    double s;
    if (sumSq >= kSumSqLow && sumSq <= kSumSqHigh) {
      s = std::sqrt(sumSq);
    } else {
      bool zero = x0 == 0.0;
      for (int i = 0; i <= k && zero; ++i) zero = R2[i * q + k] == 0.0;
      s = zero ? 0.0 : std::hypot(x0, stableNorm(R2 + k, k + 1, q));
    }
    if (s == 0.0) continue;
    const double beta = x0 >= 0.0 ? -s : s;
    const double v0 = x0 - beta;
    if (std::fabs(v0) >= kMinSafeReciprocal) {
      const double inv = 1.0 / v0;
      for (int i = 0; i <= k; ++i) R2[i * q + k] *= inv;
    } else {
      for (int i = 0; i <= k; ++i) R2[i * q + k] /= v0;
    }
    const double tau = 1.0 + std::fabs(x0) / s;
    for (int j = k + 1; j < q; ++j) {
      double dot = R1[k * q + j];
      for (int i = 0; i <= k; ++i) dot += R2[i * q + k] * R2[i * q + j];
      const double f = dot * tau;
      R1[k * q + j] -= f;
      for (int i = 0; i <= k; ++i) R2[i * q + j] -= f * R2[i * q + k];
    }
    R1[k * q + k] = beta;
    for (int i = 0; i <= k; ++i) R2[i * q + k] = 0.0;
  }
}

RangeReducer::RangeReducer(int q) : q_(q) {}

void RangeReducer::push(int64_t blockIndex, const double* R) {
  const size_t qq = static_cast<size_t>(q_) * q_;
  if (!nodes_.empty()) {
    const FactorNode& last = nodes_.back();
    const int64_t lastEnd = (last.index + 1) << last.level;
    if (blockIndex != lastEnd) throw ReductionError("blocks must be pushed in consecutive order");
  }
  nodes_.push_back({0, blockIndex});
  factors_.insert(factors_.end(), R, R + qq);
  // Merge while the two topmost nodes are siblings (left child even).
  while (nodes_.size() >= 2) {
    FactorNode& right = nodes_[nodes_.size() - 1];
    FactorNode& left = nodes_[nodes_.size() - 2];
    if (left.level != right.level || (left.index & 1) != 0 || right.index != left.index + 1) break;
    double* leftR = factors_.data() + (nodes_.size() - 2) * qq;
    // The right factor is popped next, so the merge may destroy it in place.
    mergeFactors(leftR, factors_.data() + (nodes_.size() - 1) * qq, q_);
    left.level += 1;
    left.index >>= 1;
    nodes_.pop_back();
    factors_.resize(nodes_.size() * qq);
  }
}

std::vector<double> RangeReducer::packedRoots() const {
  const size_t qq = static_cast<size_t>(q_) * q_;
  std::vector<double> out;
  out.reserve(nodes_.size() * (qq + 2));
  for (size_t n = 0; n < nodes_.size(); ++n) {
    out.push_back(static_cast<double>(nodes_[n].level));
    out.push_back(static_cast<double>(nodes_[n].index));
    out.insert(out.end(), factors_.begin() + n * qq, factors_.begin() + (n + 1) * qq);
  }
  return out;
}

namespace {

struct TreeFinisher {
  int q;
  int64_t nBlocks;
  std::map<std::pair<int32_t, int64_t>, const double*> supplied;

  // Writes node (level, index) into out.
  void node(int32_t level, int64_t index, double* out) {
    const auto it = supplied.find({level, index});
    const size_t qq = static_cast<size_t>(q) * q;
    if (it != supplied.end()) {
      std::memcpy(out, it->second, qq * sizeof(double));
      return;
    }
    if (level == 0) {
      throw ReductionError("block " + std::to_string(index) + " is missing from the reduction");
    }
    node(level - 1, 2 * index, out);
    const int64_t rightStart = (2 * index + 1) << (level - 1);
    if (rightStart >= nBlocks) return;
    std::vector<double> right(qq);
    node(level - 1, 2 * index + 1, right.data());
    mergeFactors(out, right.data(), q);
  }
};

}  // namespace

void finishTree(const std::vector<std::pair<const double*, int64_t>>& packed, int64_t nBlocks,
                int q, double* R) {
  if (nBlocks < 1) throw ReductionError("nothing to reduce: no blocks");
  TreeFinisher finisher{q, nBlocks, {}};
  const int stride = packedNodeSize(q);
  int64_t covered = 0;
  for (const auto& [values, count] : packed) {
    if (count % stride != 0) throw ReductionError("packed factors have a length that is not a whole number of nodes");
    for (int64_t off = 0; off < count; off += stride) {
      const double levelValue = values[off];
      const double indexValue = values[off + 1];
      if (!(levelValue >= 0 && levelValue <= 62 && levelValue == std::floor(levelValue)) ||
          !(indexValue >= 0 && indexValue < static_cast<double>(nBlocks) && indexValue == std::floor(indexValue))) {
        throw ReductionError("packed factor node has an invalid level or index");
      }
      const int32_t level = static_cast<int32_t>(levelValue);
      const int64_t index = static_cast<int64_t>(indexValue);
      // Range holders only hand up complete subtrees, so a node must lie
      // wholly inside [0, nBlocks) (checked before shifting: no overflow).
      if (index + 1 > (nBlocks >> level)) {
        throw ReductionError("packed factor node at level " + std::to_string(level) + ", index " +
                             std::to_string(index) + " extends past the last block");
      }
      covered += int64_t{1} << level;
      if (!finisher.supplied.emplace(std::make_pair(level, index), values + off + 2).second) {
        throw ReductionError("a block range was reduced twice");
      }
    }
  }
  if (covered != nBlocks) {
    throw ReductionError("the reduced ranges cover " + std::to_string(covered) + " blocks, expected " +
                         std::to_string(nBlocks));
  }
  int32_t top = 0;
  while ((int64_t{1} << top) < nBlocks) ++top;
  finisher.node(top, 0, R);
}

}  // namespace nlfit
