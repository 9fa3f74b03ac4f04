// Whole-column scans used to validate input and to compute goodness-of-fit
// figures that do not depend on the model. Plain loops the compiler
// vectorises; a scan of 10 million values takes a few milliseconds.
#pragma once
#include <cstdint>

namespace nlfit {

// Index of the first value that is NaN or infinite, or -1.
int64_t firstNonFinite(const double* values, int64_t n);

// One pass over the response (and its sigma): the first invalid y (NaN or
// infinite) and the first invalid sigma (not a finite number > 0), each -1 when
// there is none (a sigma is invalid too when its weight 1/sigma^2 overflows),
// and, when both are valid, the total sum of squares
// sum w_i (y_i - ybar)^2 with w_i = 1/sigma_i^2 (1 without sigma) and ybar the
// weighted mean: the denominator of R-squared.
struct ResponseScan {
  int64_t firstInvalidY = -1;
  int64_t firstInvalidSigma = -1;
  double totalSumOfSquares = 0.0;
};
ResponseScan scanResponse(const double* y, const double* sigma, int64_t n);

}  // namespace nlfit
