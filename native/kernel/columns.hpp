// Whole-column scans used to validate input and to compute goodness-of-fit
// figures that do not depend on the model. Plain loops the compiler
// vectorises; a scan of 10 million values takes a few milliseconds.
#pragma once
#include <cstdint>

namespace nlfit {

// Index of the first value that is NaN or infinite, or -1.
int64_t firstNonFinite(const double* values, int64_t n);

// Index of the first value that is not a finite number > 0, or -1.
int64_t firstInvalidSigma(const double* sigma, int64_t n);

// Sum of w_i (y_i - ybar)^2 with w_i = 1/sigma_i^2 (1 without sigma) and ybar
// the weighted mean: the total sum of squares behind R-squared. Two passes
// (mean first) with blockwise partial sums, so no catastrophic cancellation.
double weightedTotalSumOfSquares(const double* y, const double* sigma, int64_t n);

}  // namespace nlfit
