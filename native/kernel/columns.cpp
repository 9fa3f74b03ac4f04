#include "columns.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nlfit {

namespace {
constexpr int64_t kChunk = 4096;
}

int64_t firstNonFinite(const double* values, int64_t n) {
  // Scan in chunks with a branch-free test (x - x is 0 only for finite x),
  // and locate the exact index only in a chunk that failed.
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    bool bad = false;
    for (int64_t i = start; i < end; ++i) bad |= !(values[i] - values[i] == 0.0);
    if (bad) {
      for (int64_t i = start; i < end; ++i)
        if (!std::isfinite(values[i])) return i;
    }
  }
  return -1;
}

namespace {

// A standard deviation is usable if it is finite, > 0, and its weight
// 1/sigma^2 is finite (sigma >= ~1.5e-154).
inline bool validSigma(double s) { return s > 0.0 && std::isfinite(s) && std::isfinite(1.0 / (s * s)); }

// Chunk summaries for scanResponse; kWeighted selects the sigma column at
// compile time so that both loops vectorise.
template <bool kWeighted>
ResponseScan scanResponseImpl(const double* y, const double* sigma, int64_t n) {
  // Each chunk is summarised by its weight, weighted mean and sum of squared
  // deviations (two passes over a chunk that sits in cache), and chunks merge
  // in order with Chan et al.'s update: one pass over memory, no cancellation
  // from a shifted-sums formula, and the same bits on every run.
  ResponseScan scan;
  double weight = 0.0, mean = 0.0, m2 = 0.0;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    double w = 0.0, wy = 0.0, check = 0.0;
#pragma omp simd reduction(+ : w, wy, check)
    for (int64_t i = start; i < end; ++i) {
      double wi = 1.0;
      if constexpr (kWeighted) {
        wi = 1.0 / (sigma[i] * sigma[i]);
        // 0 * wi is NaN for sigma = 0 or infinite; negative sigma is caught below.
        check += sigma[i] * 0.0 + wi * 0.0 + (sigma[i] > 0.0 ? 0.0 : 1.0);
      }
      check += y[i] * 0.0;
      w += wi;
      wy += wi * y[i];
    }
    if (check != 0.0) {
      for (int64_t i = start; i < end; ++i) {
        if (scan.firstInvalidY < 0 && !std::isfinite(y[i])) scan.firstInvalidY = i;
        if (kWeighted && scan.firstInvalidSigma < 0 && !validSigma(sigma[i])) {
          scan.firstInvalidSigma = i;
        }
      }
      scan.totalSumOfSquares = std::numeric_limits<double>::quiet_NaN();
      return scan;
    }
    const double chunkMean = wy / w;
    double chunkM2 = 0.0;
#pragma omp simd reduction(+ : chunkM2)
    for (int64_t i = start; i < end; ++i) {
      const double d = y[i] - chunkMean;
      if constexpr (kWeighted) {
        chunkM2 += d * d / (sigma[i] * sigma[i]);
      } else {
        chunkM2 += d * d;
      }
    }
    const double total = weight + w;
    const double delta = chunkMean - mean;
    mean += delta * (w / total);
    m2 += chunkM2 + delta * delta * (weight * w / total);
    weight = total;
  }
  scan.totalSumOfSquares = m2;
  return scan;
}

}  // namespace

ResponseScan scanResponse(const double* y, const double* sigma, int64_t n) {
  return sigma ? scanResponseImpl<true>(y, sigma, n) : scanResponseImpl<false>(y, nullptr, n);
}

}  // namespace nlfit
