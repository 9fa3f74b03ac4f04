// Tests of the reduction of rows computed outside the kernel
// (native/kernel/rowblocks.hpp): blocks written by the bytecode evaluator and
// handed to reduceRowBlocks must reduce to the same bits as the evaluator's
// own pass (audit, loss, factor, tree, as Kernel::evalRange runs them), for
// any split of the range into calls; rows past the data are ignored whatever
// they hold; bad arguments throw.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bytecode.hpp"
#include "check.hpp"
#include "columns.hpp"
#include "layout.hpp"
#include "loss.hpp"
#include "program.hpp"
#include "rowblocks.hpp"
#include "tsqr.hpp"

using namespace nlfit;
using namespace nlfit_test;

namespace {

struct AlignedDeleter {
  void operator()(double* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }
};
using Aligned = std::unique_ptr<double[], AlignedDeleter>;

Aligned aligned(size_t n) { return Aligned(static_cast<double*>(::operator new[](n * sizeof(double), std::align_val_t(kAlign)))); }

// a * exp(-b * x) + c: params a, b, c; one variable.
std::shared_ptr<const Program> decayProgram() {
  const std::vector<int32_t> code = {kMagic, kVersion, 9, 3, 1, 0,  // header: 9 instructions, 3 params, 1 var
                                     kParam, 0, 0,                  // 0: a
                                     kParam, 1, 0,                  // 1: b
                                     kVar, 0, 0,                    // 2: x
                                     kMul, 1, 2,                    // 3: b * x
                                     kNeg, 3, 0,                    // 4: -(b x)
                                     kExp, 4, 0,                    // 5: exp
                                     kMul, 0, 5,                    // 6: a exp(-b x)
                                     kParam, 2, 0,                  // 7: c
                                     kAdd, 6, 7};                   // 8: + c
  return Program::verify(code.data(), static_cast<int64_t>(code.size()), nullptr, 0);
}

struct Data {
  std::vector<double> x, y, sigma;
  const double* vars[1];
  Columns columns(bool weighted) {
    vars[0] = x.data();
    Columns c;
    c.vars = vars;
    c.nVars = 1;
    c.y = y.data();
    c.sigma = weighted ? sigma.data() : nullptr;
    return c;
  }
};

Data makeData(int64_t n, uint64_t seed) {
  Rng rng(seed);
  Data d;
  d.x.resize(n);
  d.y.resize(n);
  d.sigma.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    d.x[i] = 4.0 * static_cast<double>(i) / static_cast<double>(n);
    // Outliers every 97 points so the robust losses rescale rows.
    d.y[i] = 2.5 * std::exp(-1.3 * d.x[i]) + 0.5 + 0.05 * rng.symmetric() + (i % 97 == 0 ? 3.0 : 0.0);
    d.sigma[i] = 0.5 + 0.25 * (rng.symmetric() + 1.0);
  }
  return d;
}

struct Pass {
  std::vector<double> roots, moments, costs;
};

// What Kernel::evalRange does for blocks [first, end): the native path.
Pass nativePass(BlockEvaluator& ev, const Columns& cols, int64_t n, int64_t firstBlock, int64_t endBlock, Loss loss,
                double fScale, bool audit) {
  const int q = ev.program().nParams() + 1;
  const int64_t nBlocks = blockCount(n);
  Pass pass;
  pass.moments.assign(3 * nBlocks, std::nan(""));
  pass.costs.assign(nBlocks, 0.0);
  Aligned A = aligned(static_cast<size_t>(kBlockSize) * q);
  std::vector<double> R(static_cast<size_t>(q) * q);
  RangeReducer reducer(q);
  for (int64_t b = firstBlock; b < endBlock; ++b) {
    const int64_t first = b * kBlockSize;
    const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - first));
    if (audit) blockMoments(cols, first, rows, pass.moments.data() + 3 * b);
    ev.evalBlock(cols, first, rows, A.get());
    pass.costs[b] = applyLoss(loss, fScale, A.get(), rows, q);
    blockFactor(A.get(), q, R.data());
    reducer.push(b, R.data());
  }
  pass.roots = reducer.packedRoots();
  return pass;
}

// The evaluator's blocks for [first, end), back to back, with garbage past the data.
std::vector<double> writtenBlocks(BlockEvaluator& ev, const Columns& cols, int64_t n, int64_t firstBlock, int64_t endBlock) {
  const int q = ev.program().nParams() + 1;
  const size_t blockDoubles = static_cast<size_t>(kBlockSize) * q;
  std::vector<double> blocks(blockDoubles * (endBlock - firstBlock));
  Aligned A = aligned(blockDoubles);
  for (int64_t b = firstBlock; b < endBlock; ++b) {
    const int64_t first = b * kBlockSize;
    const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - first));
    ev.evalBlock(cols, first, rows, A.get());
    double* out = blocks.data() + (b - firstBlock) * blockDoubles;
    std::memcpy(out, A.get(), blockDoubles * sizeof(double));
    for (int j = 0; j < q; ++j) std::fill(out + j * kBlockSize + rows, out + (j + 1) * kBlockSize, 1e300);
  }
  return blocks;
}

bool sameBits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

std::vector<double> finished(const std::vector<std::vector<double>>& parts, int64_t nBlocks, int q) {
  std::vector<std::pair<const double*, int64_t>> packed;
  for (const auto& part : parts) packed.emplace_back(part.data(), static_cast<int64_t>(part.size()));
  std::vector<double> R(static_cast<size_t>(q) * q);
  finishTree(packed, nBlocks, q, R.data());
  return R;
}

void testSameBitsAsTheNativePass() {
  const auto program = decayProgram();
  BlockEvaluator ev(program);
  const double theta[3] = {2.0, 1.1, 0.4};
  ev.setParams(theta);
  const int q = 4;
  for (int64_t n : {int64_t{1}, int64_t{511}, int64_t{512}, int64_t{5000}, int64_t{40 * 512 + 7}}) {
    Data d = makeData(n, 17 + n);
    for (bool weighted : {false, true}) {
      const Columns cols = d.columns(weighted);
      for (Loss loss : {Loss::Linear, Loss::SoftL1, Loss::Huber, Loss::Cauchy, Loss::Arctan}) {
        const int64_t nBlocks = blockCount(n);
        const std::string label = format("n=%lld weighted=%d loss=%d", static_cast<long long>(n), weighted, static_cast<int>(loss));
        const Pass native = nativePass(ev, cols, n, 0, nBlocks, loss, 0.7, true);
        const std::vector<double> blocks = writtenBlocks(ev, cols, n, 0, nBlocks);
        std::vector<double> moments(3 * nBlocks, std::nan("")), costs(nBlocks, 0.0);
        RowBlockOptions options;
        options.columns = &cols;
        options.moments = moments.data();
        options.loss = loss;
        options.fScale = 0.7;
        options.costs = costs.data();
        const std::vector<double> roots = reduceRowBlocks(blocks.data(), q, n, 0, nBlocks, options);
        check(sameBits(roots, native.roots), "whole range: roots have the native pass's bits (" + label + ")");
        check(sameBits(moments, native.moments), "whole range: the audit matches (" + label + ")");
        check(sameBits(costs, native.costs), "whole range: the costs match (" + label + ")");

        // Any split into calls finishes to the same factor.
        const std::vector<double> reference = finished({native.roots}, nBlocks, q);
        for (int64_t split : {int64_t{1}, int64_t{3}, int64_t{7}}) {
          std::vector<std::vector<double>> parts;
          for (int64_t start = 0; start < nBlocks; start += split) {
            const int64_t count = std::min(split, nBlocks - start);
            parts.push_back(reduceRowBlocks(blocks.data() + start * kBlockSize * q, q, n, start, count, options));
          }
          std::reverse(parts.begin(), parts.end());
          check(sameBits(finished(parts, nBlocks, q), reference),
                "split into calls of " + std::to_string(split) + " blocks: the same factor (" + label + ")");
        }
      }
    }
  }
}

void testChunkOffsets() {
  // A streamed chunk holds only its own rows: element 0 is global row rowOffset.
  const auto program = decayProgram();
  BlockEvaluator ev(program);
  const double theta[3] = {2.0, 1.1, 0.4};
  ev.setParams(theta);
  const int64_t n = 9 * kBlockSize + 100;
  Data d = makeData(n, 5);
  const Columns cols = d.columns(true);
  const Pass native = nativePass(ev, cols, n, 0, blockCount(n), Loss::Linear, 1.0, true);
  const std::vector<double> blocks = writtenBlocks(ev, cols, n, 4, blockCount(n));
  const int64_t offset = 4 * kBlockSize;
  const double* vars[1] = {d.x.data() + offset};
  Columns chunk;
  chunk.vars = vars;
  chunk.nVars = 1;
  chunk.y = d.y.data() + offset;
  chunk.sigma = d.sigma.data() + offset;
  std::vector<double> moments(3 * blockCount(n), std::nan(""));
  RowBlockOptions options;
  options.columns = &chunk;
  options.rowOffset = offset;
  options.moments = moments.data();
  const std::vector<double> roots = reduceRowBlocks(blocks.data(), 4, n, 4, blockCount(n) - 4, options);
  const std::vector<double> head = reduceRowBlocks(writtenBlocks(ev, cols, n, 0, 4).data(), 4, n, 0, 4, {});
  check(sameBits(finished({head, roots}, blockCount(n), 4), finished({native.roots}, blockCount(n), 4)),
        "a chunk at a row offset reduces to the in-memory factor");
  bool auditMatches = true;
  for (int64_t b = 4; b < blockCount(n); ++b) {
    auditMatches = auditMatches && std::memcmp(&moments[3 * b], &native.moments[3 * b], 3 * sizeof(double)) == 0;
  }
  check(auditMatches, "a chunk's audit lands at its global blocks");
}

void testInvalidValuesReachTheFactor() {
  // A non-finite model value must mark the trial point invalid, as in the native pass.
  std::vector<double> blocks(static_cast<size_t>(kBlockSize) * 3, 1.0);
  blocks[2 * kBlockSize + 10] = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> roots = reduceRowBlocks(blocks.data(), 3, 300, 0, 1, {});
  bool anyNaN = false;
  for (size_t i = 2; i < roots.size(); ++i) anyNaN = anyNaN || std::isnan(roots[i]);
  check(anyNaN, "a NaN residual gives a NaN factor");
  blocks[2 * kBlockSize + 10] = 1.0;
  blocks[2 * kBlockSize + 400] = std::numeric_limits<double>::infinity();  // past the 300 rows: ignored
  const std::vector<double> clean = reduceRowBlocks(blocks.data(), 3, 300, 0, 1, {});
  bool finite = true;
  for (double v : clean) finite = finite && std::isfinite(v);
  check(finite, "a value past the data is ignored");
}

template <typename Body>
void expectThrows(const std::string& what, Body&& body) {
  try {
    body();
    check(false, what + ": did not throw");
  } catch (const std::invalid_argument&) {
    check(true, what);
  }
}

void testArguments() {
  std::vector<double> blocks(static_cast<size_t>(kBlockSize) * 4 * 3, 0.0);
  std::vector<double> moments(9), costs(3);
  expectThrows("q = 1", [&] { reduceRowBlocks(blocks.data(), 1, 1000, 0, 1, {}); });
  expectThrows("q too large", [&] { reduceRowBlocks(blocks.data(), kMaxFactorColumns + 1, 1000, 0, 1, {}); });
  expectThrows("no blocks", [&] { reduceRowBlocks(nullptr, 4, 1000, 0, 1, {}); });
  expectThrows("empty range", [&] { reduceRowBlocks(blocks.data(), 4, 1000, 0, 0, {}); });
  expectThrows("range past the data", [&] { reduceRowBlocks(blocks.data(), 4, 1000, 1, 2, {}); });
  expectThrows("negative first block", [&] { reduceRowBlocks(blocks.data(), 4, 1000, -1, 1, {}); });
  RowBlockOptions audit;
  audit.moments = moments.data();
  expectThrows("moments without columns", [&] { reduceRowBlocks(blocks.data(), 4, 1000, 0, 1, audit); });
  RowBlockOptions robust;
  robust.loss = Loss::Cauchy;
  expectThrows("robust loss without costs", [&] { reduceRowBlocks(blocks.data(), 4, 1000, 0, 1, robust); });
  RowBlockOptions offset;
  offset.rowOffset = kBlockSize;
  expectThrows("rowOffset past the first row", [&] { reduceRowBlocks(blocks.data(), 4, 1000, 0, 1, offset); });
}

}  // namespace

int main() {
  const std::pair<const char*, void (*)()> tests[] = {
      {"same bits as the native pass", testSameBitsAsTheNativePass},
      {"chunk offsets", testChunkOffsets},
      {"invalid values", testInvalidValuesReachTheFactor},
      {"arguments", testArguments},
  };
  return runTests(tests);
}
