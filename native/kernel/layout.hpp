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
// Alignment of every scratch buffer the kernel owns (bytes).
constexpr std::size_t kAlign = 64;
// Layout version shared with TypeScript (src/exec/layout.ts).
constexpr int kLayoutVersion = 1;

inline int64_t blockCount(int64_t nPoints) {
  return (nPoints + kBlockSize - 1) / kBlockSize;
}

}  // namespace nlfit
