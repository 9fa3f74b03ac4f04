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
// Bounds (LMOptions::lower/upper) are handled inside the step, by an active
// set: a variable on a bound whose gradient points out of the box is held
// fixed, the Levenberg-Marquardt step is computed for the free variables only
// (lmpar on a fresh QR of the factor's free columns), and a step that would
// leave the box is shortened along its own direction so that the first bound
// it meets is reached exactly. See lm.cpp for the details and the reasons.
// Iterates are always feasible. Without finite bounds the arithmetic is that
// of the unbounded algorithm, bit for bit.
//
// The state is plain data (vectors and scalars) so that it can be serialised:
// serialize() writes all of it, options included, and restore() rebuilds a
// machine that asks and decides exactly as the original would have, bit for
// bit (a checkpoint; the format is described in lm.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nlfit {

struct LMOptions {
  double ftol = 1.49012e-8;
  double xtol = 1.49012e-8;
  double gtol = 0.0;
  double factor = 100.0;   // initial step bound = factor * |D x0| (x0 projected onto the bounds)
  int64_t maxFev = 0;      // 0 means 100 * (p + 1)
  // Bounds per parameter: empty (unbounded) or p values each; -Infinity and
  // +Infinity leave a side open. lower[j] < upper[j] is required: a parameter
  // with equal bounds must be removed from the fit instead.
  std::vector<double> lower, upper;
  // Variable scaling D (MINPACK's mode 2): empty means lmder's default, the
  // running maximum of the Jacobian column norms (scipy's x_scale='jac');
  // else p positive finite values, fixed for the whole fit (scipy's
  // x_scale = 1 / D: the trust region is a sphere in x_j * D_j).
  std::vector<double> diag;
};

// Where a parameter sits with respect to its bounds (LevenbergMarquardt::activeMask).
enum class BoundState : uint8_t { Free = 0, AtLower = 1, AtUpper = 2 };

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
  // Throws std::invalid_argument when p is outside [1, kMaxParams] and,
  // naming the parameter, when the bounds have the wrong length, are NaN,
  // leave no feasible value (lower > upper, lower = +Infinity, upper =
  // -Infinity) or are equal. A start x0 that is not
  // strictly inside the box is moved inside (feasibleStart): ask() returns
  // the moved point first.
  LevenbergMarquardt(int p, const double* x0, const LMOptions& options);

  // Starts a new fit from x0 with the same p and options: afterwards the
  // machine is exactly the one the constructor would have built (it asks,
  // decides and serialises the same, bit for bit), but it reuses its storage,
  // so the batch fitter allocates nothing per curve. The second form also
  // replaces the bounds: p values each, or null for none on that side; it
  // throws std::invalid_argument as the constructor does for invalid bounds.
  void reset(const double* x0);
  void reset(const double* x0, const double* lower, const double* upper);

  bool running() const { return status_ == LMStatus::Running; }
  // Parameters at which the next factor must be computed (p values).
  const double* ask() const { return trial_.data(); }
  // The factor of [J | r] at ask(): (p+1) x (p+1), row major, upper triangular.
  //
  // With a robust loss the rows of [J | r] were rescaled (loss.hpp) and the
  // objective is the cost, not half the squared norm of the rescaled
  // residual: pass fnorm = sqrt(2 * cost). Every test and ratio then measures
  // the cost, while the step comes from the rescaled factor (scipy's scheme).
  // A negative fnorm (the default) takes the norm from R.
  void tell(const double* R, double fnorm = -1.0);
  void abort() { status_ = LMStatus::Aborted; }

  LMStatus status() const { return status_; }
  int p() const { return p_; }
  const std::vector<double>& x() const { return x_; }
  // Factor at x() (the best point): what covariance and gradient use.
  const std::vector<double>& factor() const { return factorAtX_; }
  double fnorm() const { return fnorm_; }
  // The Levenberg-Marquardt parameter of the last step (0: a Gauss-Newton step).
  double damping() const { return par_; }
  int64_t iterations() const { return iterations_; }
  int64_t nfev() const { return nfev_; }
  int64_t njev() const { return njev_; }
  // Trial points at which the factor was not finite (the start excluded).
  int64_t nonFiniteTrials() const { return nonFiniteTrials_; }
  const LMOptions& options() const { return options_; }
  // Per parameter, a BoundState as uint8_t for x(): AtLower (AtUpper) when
  // x_j equals its lower (upper) bound and the gradient J^T r does not point
  // into the box there, i.e. the bound is an active constraint; Free
  // otherwise (also before the first factor is told).
  std::vector<uint8_t> activeMask() const;
  // The same into mask (p values), reusing its storage.
  void activeMask(std::vector<uint8_t>& mask) const;

  // The whole machine as a versioned little-endian blob: a magic, the format
  // version kStateVersion, p, the payload length, the payload (every member,
  // doubles bit-exact) and an FNV-1a 64 checksum of everything before it.
  std::vector<uint8_t> serialize() const;
  // The machine a serialize() blob describes. Throws std::invalid_argument,
  // saying what is wrong, when the blob is truncated or has trailing bytes,
  // is not a solver state, is of another version, fails its checksum, or
  // describes an impossible machine (p out of range, wrong vector sizes, a
  // pivot that is not a permutation, non-finite parameters, invalid options).
  static LevenbergMarquardt restore(const uint8_t* bytes, size_t size);
  static constexpr uint32_t kStateVersion = 1;

 private:
  LevenbergMarquardt() = default;  // for restore()
  // The state of a machine that has been told nothing yet (the constructor, reset).
  void start(const double* x0);
  void useJacobian(const double* R);
  void computeStep();
  // The bounded step: free variables only, shortened to stay in the box.
  void computeBoundedStep();
  void finish(LMStatus status) { status_ = status; }

  int p_ = 0;
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
  // Bounds: bounded_ is false when no bound is finite, and then lower_ and
  // upper_ are empty and none of the members below is used.
  bool bounded_ = false;
  std::vector<double> lower_, upper_;
  std::vector<uint8_t> active_;  // BoundState of each variable at x_ (from its factor)
  std::vector<double> boxedStart_;  // x0 projected onto the box: sets the initial step bound
  // The pending trial step was shortened by a bound (step_ and pnorm_ are
  // then those of the step taken).
  bool truncated_ = false;

  // Scratch of the step computations, kept between steps so that they
  // allocate nothing. Not part of the state: never read before written
  // within a step, and not serialised.
  struct Workspace {
    std::vector<double> sdiag, r, qtf, acnorm, diag, freeStep, d, reach, columns, reduced;
    std::vector<int> free, ipvt;
    std::vector<uint8_t> fixed;
  };
  Workspace work_;
};

// The start the solver uses for x0 within [lower, upper] (both of length p):
// scipy's rule for least_squares (make_strictly_feasible with rstep = 1e-10).
// A component on or beyond its lower bound l moves to l + 1e-10 max(1, |l|);
// on or beyond its upper bound u to u - 1e-10 max(1, |u|); if the moved value
// is not strictly inside (a box narrower than the margin), it is the midpoint
// l + (u - l) / 2. Components strictly inside are unchanged.
std::vector<double> feasibleStart(int p, const double* x0, const std::vector<double>& lower,
                                  const std::vector<double>& upper);
// The same, written into x (reusing its storage).
void feasibleStartInto(int p, const double* x0, const std::vector<double>& lower, const std::vector<double>& upper,
                       std::vector<double>& x);

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

// Scratch for covarianceFromFactor, reused between calls.
struct CovarianceWorkspace {
  std::vector<double> r, qtf, acnorm, inv;
  std::vector<int> ipvt;
};
int covarianceFromFactor(const double* R, int p, double* cov, CovarianceWorkspace& workspace);

}  // namespace nlfit
