// Levenberg-Marquardt as an ask/tell state machine over the reduced factor.
//
// The trust-region algorithm of Moré (1978), "The Levenberg-Marquardt
// algorithm: implementation and theory", as in MINPACK's lmder: variables are
// scaled by the running maximum of the Jacobian column norms, the damping
// parameter is found by the safeguarded Newton iteration of lmpar, and the
// damped system [R; sqrt(par) D] is solved by Givens rotations (qrsolv). The
// only difference is where the Jacobian comes from: instead of an m x p
// matrix the machine is told the (p+1) x (p+1) triangular factor R of
// [J | r] (tsqr.hpp). Column-pivoted QR of its leading block gives exactly
// the factorization lmder would compute from J, because J = Q R_J.
//
// Protocol:
//   LevenbergMarquardt lm(p, x0, options);
//   while (lm.running()) { const double* theta = lm.ask(); R = evaluate(theta); lm.tell(R); }
// Each ask is one pass over the data, which evaluates residuals and Jacobian
// together, so an accepted trial point's factor is reused for the next step.
// A factor with a non-finite entry marks the trial point invalid: the trust
// region shrinks (at the starting point it ends the fit, status NonFiniteStart).
//
// The state is plain data (vectors and scalars) so that it can be serialised.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace nlfit {

struct LMOptions {
  double ftol = 1.49012e-8;
  double xtol = 1.49012e-8;
  double gtol = 0.0;
  double factor = 100.0;   // initial step bound = factor * |D x0|
  int64_t maxFev = 0;      // 0 means 100 * (p + 1)
};

enum class LMStatus : int {
  Running = 0,
  Ftol = 1,          // relative reduction of the sum of squares at most ftol
  Xtol = 2,          // relative change of the parameters at most xtol
  FtolXtol = 3,
  Gtol = 4,          // residual orthogonal to the Jacobian columns within gtol
  MaxFev = 5,        // evaluation limit reached
  FtolLimit = 6,     // ftol below machine precision: no further reduction possible
  XtolLimit = 7,     // xtol below machine precision: no further improvement possible
  GtolLimit = 8,     // gtol below machine precision: residual orthogonal to the Jacobian
  NonFiniteStart = 9,  // model or derivatives not finite at the starting point
  Aborted = 10,
  // The step bound collapsed because the trial points around x were not
  // finite: x may lie at the edge of the model's domain, not at an optimum.
  NonFiniteEdge = 11,
};

bool lmSucceeded(LMStatus status);
const char* lmStatusName(LMStatus status);
std::string lmStatusMessage(LMStatus status, const LMOptions& options);

class LevenbergMarquardt {
 public:
  LevenbergMarquardt(int p, const double* x0, const LMOptions& options);

  bool running() const { return status_ == LMStatus::Running; }
  // Parameters at which the next factor must be computed (p values).
  const double* ask() const { return trial_.data(); }
  // The factor of [J | r] at ask(): (p+1) x (p+1), row major, upper triangular.
  void tell(const double* R);
  void abort() { status_ = LMStatus::Aborted; }

  LMStatus status() const { return status_; }
  int p() const { return p_; }
  const std::vector<double>& x() const { return x_; }
  // Factor at x() (the best point): what covariance and gradient use.
  const std::vector<double>& factor() const { return factorAtX_; }
  double fnorm() const { return fnorm_; }
  int64_t iterations() const { return iterations_; }
  int64_t nfev() const { return nfev_; }
  int64_t njev() const { return njev_; }
  // Trial points at which the factor was not finite (the start excluded).
  int64_t nonFiniteTrials() const { return nonFiniteTrials_; }
  const LMOptions& options() const { return options_; }

 private:
  void useJacobian(const double* R);
  void computeStep();
  void finish(LMStatus status) { status_ = status; }

  int p_;
  LMOptions options_;
  LMStatus status_ = LMStatus::Running;
  bool atStart_ = true;
  bool firstStep_ = true;
  std::vector<double> x_, trial_, step_, diag_;
  std::vector<double> factorAtX_;   // (p+1)^2, factor at x_
  // Column-pivoted QR of R_J at x_: r (p x p, column major; upper triangle),
  // its permutation, the rotated residual Q^T r and the column norms.
  std::vector<double> r_, qtf_, acnorm_;
  std::vector<int> ipvt_;
  double fnorm_ = 0.0, xnorm_ = 0.0, delta_ = 0.0, par_ = 0.0, gnorm_ = 0.0;
  double pnorm_ = 0.0, prered_ = 0.0, dirder_ = 0.0;
  int64_t iterations_ = 0, nfev_ = 0, njev_ = 0, nonFiniteTrials_ = 0;
};

// Column-pivoted Householder QR of the leading p x p block of a factor R
// (q = p + 1, row major). Outputs r (p x p column major, upper triangle), the
// pivot ipvt (column k of r is column ipvt[k] of R_J), Q2^T applied to the
// factor's last column (qtf), and the column norms of R_J (= of J).
void pivotedFactor(const double* R, int p, std::vector<double>& r, std::vector<int>& ipvt,
                   std::vector<double>& qtf, std::vector<double>& acnorm);

// (J^T J)^-1 from a factor R ((p+1) x (p+1) row major) into cov (p x p, row
// major). Returns the numerical rank; when it is below p the inverse does not
// exist and cov is left filled with +Infinity.
int covarianceFromFactor(const double* R, int p, double* cov);

}  // namespace nlfit
