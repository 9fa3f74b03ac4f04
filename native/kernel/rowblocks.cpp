// Reduction of rows computed outside the kernel; see rowblocks.hpp.
#include "rowblocks.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "layout.hpp"
#include "tsqr.hpp"

namespace nlfit {

namespace {

struct FreeDeleter {
  void operator()(double* p) const { std::free(p); }
};

}  // namespace

std::vector<double> reduceRowBlocks(const double* blocks, int q, int64_t nPoints, int64_t firstBlock,
                                    int64_t nBlocks, const RowBlockOptions& options) {
  if (q < 2 || q > kMaxFactorColumns) {
    throw std::invalid_argument("reduceRowBlocks: q = " + std::to_string(q) + " outside [2, " +
                                std::to_string(kMaxFactorColumns) + "]");
  }
  if (blocks == nullptr) throw std::invalid_argument("reduceRowBlocks: no blocks");
  if (nPoints < 1 || firstBlock < 0 || nBlocks < 1 || firstBlock + nBlocks > blockCount(nPoints)) {
    throw std::invalid_argument("reduceRowBlocks: blocks [" + std::to_string(firstBlock) + ", " +
                                std::to_string(firstBlock + nBlocks) + ") are not within the " +
                                std::to_string(blockCount(nPoints)) + " blocks of the data");
  }
  if (options.moments != nullptr && options.columns == nullptr) {
    throw std::invalid_argument("reduceRowBlocks: the audit (moments) needs the columns");
  }
  if (options.rowOffset < 0 || options.rowOffset > firstBlock * kBlockSize) {
    throw std::invalid_argument("reduceRowBlocks: rowOffset past the first block's first row");
  }
  if (options.loss != Loss::Linear && options.costs == nullptr) {
    throw std::invalid_argument("reduceRowBlocks: a robust loss needs a costs array");
  }
  // blockFactor wants its block aligned and destroys it: each block is copied
  // into aligned scratch, rows past the data set to 0.
  const size_t blockDoubles = static_cast<size_t>(kBlockSize) * q;
  const size_t bytes = ((blockDoubles * sizeof(double) + kAlign - 1) / kAlign) * kAlign;
  std::unique_ptr<double, FreeDeleter> scratch(static_cast<double*>(std::aligned_alloc(kAlign, bytes)));
  if (!scratch) throw std::bad_alloc();
  double* A = scratch.get();
  RangeReducer reducer(q);
  std::vector<double> R(static_cast<size_t>(q) * q);
  for (int64_t k = 0; k < nBlocks; ++k) {
    if (options.cancel != nullptr && options.cancel->stop()) return {};
    const int64_t b = firstBlock + k;
    const int64_t first = b * kBlockSize;
    const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, nPoints - first));
    if (options.moments) blockMoments(*options.columns, first - options.rowOffset, rows, options.moments + 3 * b);
    const double* source = blocks + static_cast<size_t>(k) * blockDoubles;
    for (int j = 0; j < q; ++j) {
      double* column = A + static_cast<size_t>(j) * kBlockSize;
      std::memcpy(column, source + static_cast<size_t>(j) * kBlockSize, sizeof(double) * rows);
      std::fill(column + rows, column + kBlockSize, 0.0);
    }
    if (options.costs) options.costs[b] = applyLoss(options.loss, options.fScale, A, rows, q);
    blockFactor(A, q, R.data());
    reducer.push(b, R.data());
  }
  return reducer.packedRoots();
}

}  // namespace nlfit
