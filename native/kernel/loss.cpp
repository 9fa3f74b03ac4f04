#include "loss.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "layout.hpp"

namespace nlfit {

LossValue lossValue(Loss loss, double z) {
  switch (loss) {
    case Loss::Linear:
      return {z, 1.0, 0.0};
    case Loss::SoftL1: {
      const double t = 1.0 + z;
      const double s = std::sqrt(t);
      return {2.0 * (s - 1.0), 1.0 / s, -0.5 / (s * t)};
    }
    case Loss::Huber: {
      if (z <= 1.0) return {z, 1.0, 0.0};
      const double s = std::sqrt(z);
      return {2.0 * s - 1.0, 1.0 / s, -0.5 / (s * z)};
    }
    case Loss::Cauchy: {
      const double t = 1.0 + z;
      return {std::log1p(z), 1.0 / t, -1.0 / (t * t)};
    }
    case Loss::Arctan: {
      const double t = 1.0 + z * z;
      return {std::atan(z), 1.0 / t, -2.0 * z / (t * t)};
    }
  }
  return {std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0};
}

namespace {

// The rescaling of loss.hpp for blocks of Width rows (a template so the
// kBlockSize loop keeps its constant stride).
template <int Width>
__attribute__((always_inline)) inline double applyLossAt(Loss loss, double fScale, double* A, int rows, int q) {
  double* f = A + static_cast<int64_t>(q - 1) * Width;
  double cost = 0.0;
  if (loss == Loss::Linear) {
    for (int i = 0; i < rows; ++i) cost += f[i] * f[i];
    return 0.5 * cost;
  }
  const double eps = std::numeric_limits<double>::epsilon();
  const double scale2 = fScale * fScale;
  for (int i = 0; i < rows; ++i) {
    const double z = (f[i] / fScale) * (f[i] / fScale);
    const LossValue v = lossValue(loss, z);
    cost += scale2 * v.rho;
    // rho'' is per z; in terms of f it is rho''(z) * 2 z (z = f^2 / fScale^2).
    const double s = std::sqrt(std::max(v.d1 + 2.0 * v.d2 * z, eps));
    for (int j = 0; j < q - 1; ++j) A[static_cast<int64_t>(j) * Width + i] *= s;
    f[i] *= v.d1 / s;
  }
  return 0.5 * cost;
}

}  // namespace

double applyLoss(Loss loss, double fScale, double* A, int rows, int q) {
  return applyLossAt<kBlockSize>(loss, fScale, A, rows, q);
}

double applyLoss(Loss loss, double fScale, double* A, int rows, int q, int width) {
  switch (width) {
    case kBlockWidths[0]: return applyLossAt<kBlockWidths[0]>(loss, fScale, A, rows, q);
    case kBlockWidths[1]: return applyLossAt<kBlockWidths[1]>(loss, fScale, A, rows, q);
    case kBlockWidths[2]: return applyLossAt<kBlockWidths[2]>(loss, fScale, A, rows, q);
    case kBlockSize: return applyLossAt<kBlockSize>(loss, fScale, A, rows, q);
    default: break;
  }
  throw std::invalid_argument("applyLoss: block width " + std::to_string(width) + " is not supported");
}

}  // namespace nlfit
