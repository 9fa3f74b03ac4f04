// Fixed numbers that decide which rows meet in which block. They are part of
// the reproducibility contract: two fits agree to the last bit only if they
// use the same block size, so it does not depend on threads, chunk sizes or
// the data source. src/exec/layout.ts mirrors them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace nlfit {

// Rows per block. Every block but the last holds exactly this many points.
constexpr int kBlockSize = 512;
// Rows of the blocks a BlockEvaluator may use (program.hpp), narrowest
// first. Every pass of a single fit uses kBlockSize; the narrow widths serve
// the batch fitter (batch.hpp), which gives each small curve one block of
// the narrowest width that holds it. Each is a multiple of 32 rows (four
// vectors of eight), which is what makes a curve's factor the same at every
// width (tsqr.hpp).
constexpr int kBlockWidths[] = {32, 64, 128, kBlockSize};
constexpr int kBlockWidthCount = 4;  // the kernels dispatch on each width by name
static_assert(sizeof kBlockWidths / sizeof kBlockWidths[0] == kBlockWidthCount &&
                  kBlockWidths[kBlockWidthCount - 1] == kBlockSize,
              "kBlockWidths: narrowest first, kBlockSize last");
// Alignment of every scratch buffer the kernel owns (bytes).
constexpr std::size_t kAlign = 64;
// Layout version shared with TypeScript (src/exec/layout.ts).
constexpr int kLayoutVersion = 1;

inline int64_t blockCount(int64_t nPoints) {
  return (nPoints + kBlockSize - 1) / kBlockSize;
}

}  // namespace nlfit
