// Rows of [J | r] computed outside the kernel (a model given as a JavaScript
// function, src/exec/jsModel.ts), reduced exactly as a pass of the bytecode
// evaluator reduces its own: per block the data audit (blockMoments), the
// robust loss (applyLoss), the Householder factor (blockFactor) and the fixed
// tree (RangeReducer). Whoever computes the rows, the blocks and the tree are
// the canonical ones of tsqr.hpp, so the result has the same bits for any
// split of the blocks among threads, tasks or streamed chunks.
//
// Contract
//   reduceRowBlocks(blocks, q, nPoints, firstBlock, nBlocks, options)
//     blocks   nBlocks blocks back to back, block k being global block
//              firstBlock + k, each kBlockSize x q column major as
//              BlockEvaluator::evalBlock writes one (program.hpp): columns
//              0..q-2 the weighted Jacobian, column q-1 the weighted residual.
//              Any alignment; not modified. Rows past the data (rows >=
//              nPoints - first of the last block) are taken as exactly 0,
//              whatever the caller left there.
//     options.moments  3 per global block: each block's audit of
//              options.columns (required then), whose element 0 is global
//              row options.rowOffset.
//     options.costs    1 per global block: each block's cost (loss.hpp),
//              required with a loss other than Linear.
//     options.cancel   asked before every block (cancel.hpp); when it says
//              stop, the call returns an empty vector (the blocks already
//              audited or costed keep what they wrote; the caller drops the
//              pass).
//   Returns the packed subtree roots of blocks [firstBlock, firstBlock +
//   nBlocks) (RangeReducer::packedRoots), never empty unless cancelled.
//   Throws std::invalid_argument for q outside [2, kMaxFactorColumns], an
//   empty range, one past nPoints, a rowOffset past the first block's first
//   row, moments without columns, or a robust loss without costs.
//   Thread-safe (scratch is per call; the cancel check is the caller's).
#pragma once
#include <cstdint>
#include <vector>

#include "cancel.hpp"
#include "columns.hpp"
#include "loss.hpp"

namespace nlfit {

struct RowBlockOptions {
  // The columns the rows were computed from, for the audit; null without it.
  const Columns* columns = nullptr;
  // Global row of element 0 of every column (a streamed chunk holds only its own rows).
  int64_t rowOffset = 0;
  double* moments = nullptr;
  Loss loss = Loss::Linear;
  double fScale = 1.0;
  double* costs = nullptr;
  // Stops the reduction between blocks; null: never.
  CancelCheck* cancel = nullptr;
};

std::vector<double> reduceRowBlocks(const double* blocks, int q, int64_t nPoints, int64_t firstBlock,
                                    int64_t nBlocks, const RowBlockOptions& options);

}  // namespace nlfit
