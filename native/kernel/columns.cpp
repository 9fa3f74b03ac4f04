#include "columns.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "layout.hpp"

namespace nlfit {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The moments of an invalid block: a negative weight, which no valid block
// can have (mergeMoments tells the two apart by it).
void markInvalid(double* out) {
  out[0] = -1.0;
  out[1] = kNaN;
  out[2] = kNaN;
}

// The block loops below keep kLanes independent partial sums (an array the
// compiler maps onto several vector registers), so that a sum is not one chain
// of dependent additions: a single accumulator made the first pass's audit
// cost as much as a separate scan of the data.
constexpr int kLanes = 32;

double sumLanes(const double* lanes) {
  double total = 0.0;
  for (int k = 0; k < kLanes; ++k) total += lanes[k];
  return total;
}

// Nonzero (or NaN) if any of values[0..n) is NaN or infinite: x * 0 is 0 only
// for finite x. Branch-free, so it vectorises.
double nonFiniteCheck(const double* values, int n) {
  double lanes[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += values[i + k] * 0.0;
  for (int k = 0; i + k < n; ++k) lanes[k] += values[i + k] * 0.0;
  return sumLanes(lanes);
}

// Response moments of rows [0, n) of y (and sigma when kWeighted): two passes
// over values in cache, so no cancellation from a shifted-sums formula. The
// check term is nonzero or NaN for an invalid value: y * 0 is NaN for a
// non-finite y, 0 * w is NaN for sigma = 0 or infinite, and a sigma that is not
// > 0 adds 1.
template <bool kWeighted>
bool responseMoments(const double* y, const double* sigma, int n, double* out) {
  double w[kLanes] = {}, wy[kLanes] = {}, check[kLanes] = {};
  auto step = [&](int i, int k) {
    double wi = 1.0;
    if constexpr (kWeighted) {
      wi = 1.0 / (sigma[i] * sigma[i]);
      check[k] += sigma[i] * 0.0 + wi * 0.0 + (sigma[i] > 0.0 ? 0.0 : 1.0);
    }
    check[k] += y[i] * 0.0;
    w[k] += wi;
    wy[k] += wi * y[i];
  };
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) step(i + k, k);
  for (int k = 0; i + k < n; ++k) step(i + k, k);
  if (sumLanes(check) != 0.0) {
    markInvalid(out);
    return false;
  }
  const double weight = sumLanes(w);
  const double mean = sumLanes(wy) / weight;
  double m2[kLanes] = {};
  auto deviation = [&](int i, int k) {
    const double d = y[i] - mean;
    if constexpr (kWeighted) {
      m2[k] += d * d / (sigma[i] * sigma[i]);
    } else {
      m2[k] += d * d;
    }
  };
  i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) deviation(i + k, k);
  for (int k = 0; i + k < n; ++k) deviation(i + k, k);
  out[0] = weight;
  out[1] = mean;
  out[2] = sumLanes(m2);
  return true;
}

bool responseBlock(const double* y, const double* sigma, int n, double* out) {
  return sigma ? responseMoments<true>(y, sigma, n, out) : responseMoments<false>(y, nullptr, n, out);
}

// Chan et al.'s pairwise update of (weight, mean, m2) by one block.
struct MomentSum {
  double weight = 0.0, mean = 0.0, m2 = 0.0;
  void add(const double* block) {
    const double w = block[0];
    const double total = weight + w;
    const double delta = block[1] - mean;
    mean += delta * (w / total);
    m2 += block[2] + delta * delta * (weight * w / total);
    weight = total;
  }
};

}  // namespace

bool validSigma(double s) { return s > 0.0 && std::isfinite(s) && std::isfinite(1.0 / (s * s)); }

int64_t firstNonFinite(const double* values, int64_t n) {
  // Test a block at a time and locate the exact index only in a block that failed.
  for (int64_t start = 0; start < n; start += kBlockSize) {
    const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - start));
    if (nonFiniteCheck(values + start, rows) != 0.0) {
      for (int64_t i = start; i < start + rows; ++i)
        if (!std::isfinite(values[i])) return i;
    }
  }
  return -1;
}

ResponseScan scanResponse(const double* y, const double* sigma, int64_t n) {
  ResponseScan scan;
  MomentSum sum;
  double block[3];
  for (int64_t start = 0; start < n; start += kBlockSize) {
    const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - start));
    if (!responseBlock(y + start, sigma ? sigma + start : nullptr, rows, block)) {
      for (int64_t i = start; i < start + rows; ++i) {
        if (scan.firstInvalidY < 0 && !std::isfinite(y[i])) scan.firstInvalidY = i;
        if (sigma && scan.firstInvalidSigma < 0 && !validSigma(sigma[i])) scan.firstInvalidSigma = i;
      }
      // The first invalid y may lie in a later block than the first invalid sigma.
      if (scan.firstInvalidY < 0) {
        const int64_t rest = firstNonFinite(y + start + rows, n - start - rows);
        if (rest >= 0) scan.firstInvalidY = start + rows + rest;
      }
      if (sigma && scan.firstInvalidSigma < 0) {
        for (int64_t i = start + rows; i < n; ++i)
          if (!validSigma(sigma[i])) {
            scan.firstInvalidSigma = i;
            break;
          }
      }
      scan.totalSumOfSquares = kNaN;
      return scan;
    }
    sum.add(block);
  }
  scan.totalSumOfSquares = sum.m2;
  return scan;
}

bool blockMoments(const Columns& cols, int64_t first, int rows, double* out) {
  double check = 0.0;
  for (int v = 0; v < cols.nVars; ++v) check += nonFiniteCheck(cols.vars[v] + first, rows);
  if (check != 0.0) {
    markInvalid(out);
    return false;
  }
  return responseBlock(cols.y + first, cols.sigma ? cols.sigma + first : nullptr, rows, out);
}

double mergeMoments(const double* moments, int64_t nBlocks, int64_t* firstInvalidBlock) {
  MomentSum sum;
  for (int64_t b = 0; b < nBlocks; ++b) {
    if (!(moments[3 * b] >= 0.0)) {
      *firstInvalidBlock = b;
      return kNaN;
    }
    sum.add(moments + 3 * b);
  }
  *firstInvalidBlock = -1;
  return sum.m2;
}

}  // namespace nlfit
