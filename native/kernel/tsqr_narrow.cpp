// The Householder factor of the narrow blocks of the batch fitter
// (tsqr.hpp, blockFactor with a width; the algorithm is in block_qr.hpp).
#include <string>

#include "block_qr.hpp"
#include "tsqr.hpp"

namespace nlfit {

void blockFactor(double* A, int q, double* R, int width) {
  if (q > width) {
    throw ReductionError("a block of " + std::to_string(width) + " rows cannot be factored with " +
                         std::to_string(q) + " columns");
  }
  switch (width) {
    case kBlockWidths[0]: return blockFactorAt<kBlockWidths[0]>(A, q, R);
    case kBlockWidths[1]: return blockFactorAt<kBlockWidths[1]>(A, q, R);
    case kBlockWidths[2]: return blockFactorAt<kBlockWidths[2]>(A, q, R);
    case kBlockSize: return blockFactor(A, q, R);
    default: break;
  }
  throw ReductionError("block width " + std::to_string(width) + " is not supported");
}

}  // namespace nlfit
