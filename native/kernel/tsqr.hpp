// TSQR: the reduction of the rows [J | r] of every data point to one small
// triangular factor, as a fixed binary tree over block indices.
//
// Each block of kBlockSize rows, A (kBlockSize x q, q = p + 1, column major),
// is reduced by Householder QR to its q x q upper-triangular factor R (row
// major, zeros below the diagonal). Two factors merge by QR of the 2q x q
// stack [R1; R2], exploiting that both are triangular. Because Q is
// orthogonal, the final R satisfies R^T R = [J r]^T [J r]: its leading p x p
// block is R_J, its last column holds Q^T r, and the squared norm of that
// column is the residual sum of squares. No normal equations are ever formed,
// so the factor keeps the accuracy of a backward-stable QR of the full
// Jacobian (Demmel, Grigori, Hoemmen, Langou 2012).
//
// The canonical tree: node (level L, index k) covers blocks
// [k 2^L, min((k+1) 2^L, nBlocks)). An internal node is merge(left, right),
// or just its left child when the right child would start at or past
// nBlocks. Whoever holds a contiguous range of blocks reduces the maximal
// aligned subtrees inside it (RangeReducer) and hands up those roots;
// finishTree completes the same tree. Every partition of the blocks therefore
// performs exactly the same floating-point operations on the same operands,
// and the final R is bitwise identical for any number of workers, tasks or
// processes.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "layout.hpp"

namespace nlfit {

class ReductionError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Most columns a factor may have (parameters + 1).
constexpr int kMaxFactorColumns = 65;

// Householder QR of the block A (kBlockSize x q, column major, aligned to
// kAlign; destroyed). Writes the q x q row-major upper-triangular factor R.
void blockFactor(double* A, int q, double* R);

// The same for a block of `width` rows (one of kBlockWidths, at least q;
// ReductionError otherwise), for the small curves of a batch. Rows past a
// curve's points are zero, and the factor of a narrow block is the factor of
// the kBlockSize block holding the same rows, to the bit (the sums group the
// rows alike; block_qr.hpp), so a curve's fit does not depend on the width.
void blockFactor(double* A, int q, double* R, int width);

// R1 <- triangular factor of [R1; R2]. R2 is destroyed. Both q x q row major.
void mergeFactors(double* R1, double* R2, int q);

// Euclidean norm of n values, without overflow or harmful underflow.
double stableNorm(const double* x, int64_t n, int64_t stride = 1);

// A subtree root handed up by a range holder.
struct FactorNode {
  int32_t level;
  int64_t index;
};

// Number of values one packed node occupies: level, index, then q*q factor.
inline int packedNodeSize(int q) { return 2 + q * q; }

// Reduces consecutive blocks of one range to the maximal aligned subtrees.
class RangeReducer {
 public:
  explicit RangeReducer(int q);
  // Adds the factor of the next block. Blocks must arrive in increasing,
  // consecutive order.
  void push(int64_t blockIndex, const double* R);
  // The subtree roots, packed as [level, index, R...] per node.
  std::vector<double> packedRoots() const;
  int q() const { return q_; }

 private:
  int q_;
  std::vector<FactorNode> nodes_;
  std::vector<double> factors_;  // q*q per node, parallel to nodes_
};

// Completes the canonical tree from packed roots (any number of arrays, in any
// order) and writes the root factor (q x q, row major) to R. Throws
// ReductionError if the roots do not cover blocks [0, nBlocks) exactly once.
void finishTree(const std::vector<std::pair<const double*, int64_t>>& packed, int64_t nBlocks,
                int q, double* R);

}  // namespace nlfit
