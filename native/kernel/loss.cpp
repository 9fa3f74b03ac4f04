#include "loss.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

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

double applyLoss(Loss loss, double fScale, double* A, int rows, int q) {
  double* f = A + static_cast<int64_t>(q - 1) * kBlockSize;
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
    for (int j = 0; j < q - 1; ++j) A[static_cast<int64_t>(j) * kBlockSize + i] *= s;
    f[i] *= v.d1 / s;
  }
  return 0.5 * cost;
}

}  // namespace nlfit
