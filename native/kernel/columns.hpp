// The data columns a pass reads, and the checks and summaries of them that do
// not depend on the model: validity of every value, and the total sum of
// squares (the denominator of R-squared).
//
// The checks run block by block inside the first pass (blockMoments), while a
// block is in cache for the model anyway: the data is read once per pass, never
// again for validation. Per-block summaries merge in block order
// (mergeMoments), so the figure has the same bits however the blocks were split
// among threads. The whole-column scans remain for diagnosing bad input.
#pragma once
#include <cstdint>

namespace nlfit {

// Views of the data a pass reads. vars[v] points at column v's element 0
// (global point index 0); y likewise; sigma may be null.
struct Columns {
  const double* const* vars = nullptr;
  int nVars = 0;
  const double* y = nullptr;
  const double* sigma = nullptr;
};

// Index of the first value that is NaN or infinite, or -1.
int64_t firstNonFinite(const double* values, int64_t n);

// A standard deviation is usable if it is finite, > 0, and its weight
// 1/sigma^2 is finite (sigma >= ~1.5e-154).
bool validSigma(double s);

// One pass over the response (and its sigma): the first invalid y (NaN or
// infinite) and the first invalid sigma (not validSigma), each -1 when there
// is none, and, when both are valid, the total sum of squares
// sum w_i (y_i - ybar)^2 with w_i = 1/sigma_i^2 (1 without a sigma column) and
// ybar the weighted mean, merged over kBlockSize blocks exactly as
// mergeMoments does.
struct ResponseScan {
  int64_t firstInvalidY = -1;
  int64_t firstInvalidSigma = -1;
  double totalSumOfSquares = 0.0;
};
ResponseScan scanResponse(const double* y, const double* sigma, int64_t n);

// Rows [first, first + rows) of one block: checks every value the block reads
// (each var and y finite, sigma valid) and writes its response moments
// out[0..2] = { sum w_i, weighted mean, sum w_i (y_i - mean)^2 }. Returns
// false, with out all NaN, if any value is invalid. rows must be in
// [1, kBlockSize].
bool blockMoments(const Columns& cols, int64_t first, int rows, double* out);

// Merges nBlocks block moments (3 doubles each, in block order) with Chan et
// al.'s update. Sets *firstInvalidBlock to the first block whose moments are
// NaN (and returns NaN), else to -1 and returns the total sum of squares.
double mergeMoments(const double* moments, int64_t nBlocks, int64_t* firstInvalidBlock);

}  // namespace nlfit
