#include "columns.hpp"

#include <algorithm>
#include <cmath>

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

int64_t firstInvalidSigma(const double* sigma, int64_t n) {
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    bool bad = false;
    for (int64_t i = start; i < end; ++i) bad |= !(sigma[i] > 0.0 && sigma[i] - sigma[i] == 0.0);
    if (bad) {
      for (int64_t i = start; i < end; ++i)
        if (!(sigma[i] > 0.0 && std::isfinite(sigma[i]))) return i;
    }
  }
  return -1;
}

double weightedTotalSumOfSquares(const double* y, const double* sigma, int64_t n) {
  auto weight = [sigma](int64_t i) { return sigma ? 1.0 / (sigma[i] * sigma[i]) : 1.0; };
  double sumW = 0.0, sumWy = 0.0;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    double w = 0.0, wy = 0.0;
    for (int64_t i = start; i < end; ++i) {
      const double wi = weight(i);
      w += wi;
      wy += wi * y[i];
    }
    sumW += w;
    sumWy += wy;
  }
  const double mean = sumWy / sumW;
  double tss = 0.0;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    double part = 0.0;
    for (int64_t i = start; i < end; ++i) {
      const double d = y[i] - mean;
      part += weight(i) * d * d;
    }
    tss += part;
  }
  return tss;
}

}  // namespace nlfit
