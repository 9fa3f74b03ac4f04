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

#include "block_qr.hpp"

namespace nlfit {

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

void blockFactor(double* A, int q, double* R) { blockFactorAt<kBlockSize>(A, q, R); }

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
