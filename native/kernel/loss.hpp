// Robust loss functions, applied to a block of rows of [J | r] before its QR
// reduction, with the definitions and the row rescaling of scipy's
// least_squares, so that the optimum matches least_squares(loss=...).
//
// For a residual f (already divided by sigma) and z = (f / fScale)^2 the loss
// is fScale^2 * rho(z), and the cost of a fit is 0.5 * sum fScale^2 rho(z_i).
// The Gauss-Newton model of that cost at the current point is the linear
// least-squares problem of the rescaled rows
//   s_i = sqrt(max(rho'(z_i) + 2 rho''(z_i) z_i, eps))
//   J_i <- s_i J_i,   f_i <- f_i rho'(z_i) / s_i
// (Triggs et al., "Bundle adjustment: a modern synthesis", section 4.3; scipy
// least_squares' scale_for_robust_loss_function): its gradient is the true
// gradient of the cost and its curvature keeps the second-order term of the
// loss where that is positive.
//
//   rho(z)                 linear z;  soft_l1 2(sqrt(1+z)-1);
//                          huber z (z <= 1) else 2 sqrt(z) - 1;
//                          cauchy log(1+z);  arctan atan(z)
#pragma once
#include <cstdint>

namespace nlfit {

enum class Loss : int32_t { Linear = 0, SoftL1 = 1, Huber = 2, Cauchy = 3, Arctan = 4 };
constexpr int32_t kLossCount = 5;

// rho(z) and its first two derivatives.
struct LossValue {
  double rho, d1, d2;
};
LossValue lossValue(Loss loss, double z);

// Rescales rows [0, rows) of a block A (kBlockSize x q column major, as
// BlockEvaluator::evalBlock writes it: columns 0..q-2 the Jacobian, column q-1
// the residual) for the loss, and returns the block's cost
// 0.5 * sum fScale^2 rho(z_i) (for Linear: 0.5 * sum f_i^2, rows untouched).
// Rows >= rows stay 0. A non-finite residual leaves the row non-finite (the
// caller's factor then marks the trial point invalid).
double applyLoss(Loss loss, double fScale, double* A, int rows, int q);
// The same for a block of `width` rows (a narrow block of the batch fitter).
double applyLoss(Loss loss, double fScale, double* A, int rows, int q, int width);

}  // namespace nlfit
