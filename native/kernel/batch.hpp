// The batch fitter: many small independent curves, each fitted to the end by
// its own Levenberg-Marquardt machine, entirely in C++ (fitMany's kernel).
//
// Contract
//   fitCurves(problem, curveStart, curveEnd, out) fits curves [curveStart,
//   curveEnd) of the problem and writes their rows of out; it reads every
//   input and writes nothing else, so threads may fit disjoint curve ranges
//   of one problem at once into one output (each call keeps its own scratch).
//   It throws std::invalid_argument for a problem that is inconsistent as a
//   whole (sizes, a sigma or a robust loss with the Poisson estimator,
//   options out of range, curves out of range, bounds that leave a parameter
//   of a curve in the range no feasible value); before any curve is fitted.
//   Bad data is not an error: a curve with a non-finite x, y or sigma (or
//   sigma <= 0, a negative count for the Poisson estimator, a non-finite
//   start) gets status InvalidData, one with fewer points than parameters
//   TooFewPoints; both get NaN parameters, errors and chi2 and 0 iterations
//   and evaluations. A fit that ends without converging is a result: its
//   LMStatus says why.
//   It returns the number of curves fitted: curveEnd - curveStart, or fewer
//   when problem.cancel (cancel.hpp, asked before each curve) said stop; the
//   curves fitted then are [curveStart, curveStart + the count) and the rest
//   of the range is left as it was.
//
//   Per curve c (points [offsets[c], offsets[c+1]), or n per curve):
//     params[c*p + j]   the fitted parameters (the start moved into the
//                       bounds, for a fit that could not take a step)
//     stdErrors[c*p + j] sqrt of the covariance diagonal: (J^T J)^-1 from the
//                       final factor, times chi2 / (n - p) unless absoluteSigma
//                       (curve_fit's convention; Infinity when J is rank
//                       deficient or n = p, NaN for a parameter held on a
//                       bound, which is left out of the covariance)
//     chi2[c]           least squares: sum ((f - y) / sigma)^2 at the
//                       solution (also with a robust loss: the plain weighted
//                       sum of squares; the covariance is then scaled by
//                       2 cost / (n - p) as curve_fit does); Poisson: the
//                       deviance 2 sum (f - y + y ln(y / f)), 0 ln 0 = 0
//     iterations[c], nfev[c]   accepted steps and model evaluations
//     status[c]         a BatchStatus code (batchStatusName)
//
// Blocks: a curve of n points is evaluated as one block of the narrowest
// width in kBlockWidths that holds it (and its p + 1 columns), and a curve of
// more than kBlockSize points as blocks of kBlockSize reduced in the canonical
// tree of tsqr.hpp. A block's factor has the same bits at every width
// (program.hpp, tsqr.hpp), so the width is only a matter of speed.
//
// Estimators
//   LeastSquares: rows w_i [J_i | f_i - y_i], w_i = 1/sigma_i, optionally
//   rescaled for a robust loss (loss.hpp), exactly as a single fit does.
//   Poisson (maximum likelihood for counts y_i >= 0; no sigma, no loss):
//   Fisher scoring in least-squares form. With s_i = 1/sqrt(f_i) the rows
//   are s_i [J_i | f_i - y_i]: then J^T r = sum (1 - y_i/f_i) grad f_i is the
//   gradient of half the deviance and J^T J = sum grad f_i grad f_i^T / f_i
//   the Fisher information, so the Levenberg-Marquardt step is a damped
//   scoring step, and the machine is told the cost deviance/2 (tell(R,
//   sqrt(deviance))), so every acceptance test and convergence test measures
//   the deviance. A trial point with some f_i <= 0 (or not finite) is invalid
//   (the step shrinks). The covariance is the inverse Fisher information,
//   not rescaled: the counts' variance is the model itself.
//
// Determinism: a curve's results depend only on its own data, start, bounds
// and the options, never on curveStart/curveEnd or the thread.
#pragma once
#include <cstdint>
#include <memory>

#include "cancel.hpp"
#include "loss.hpp"
#include "program.hpp"

namespace nlfit {

enum class Estimator : int32_t { LeastSquares = 0, Poisson = 1 };

// Per-curve status: the LMStatus codes (lm.hpp; Running never appears), then
// the outcomes of curves that could not be fitted.
enum class BatchStatus : uint8_t {
  InvalidData = 12,   // non-finite x, y, sigma or start; sigma <= 0; a negative count (Poisson)
  TooFewPoints = 13,  // fewer points than parameters
};
constexpr int kBatchStatusCount = 14;
// "ftol", "xtol", ... (lmStatusName), "invalid_data", "too_few_points";
// "unknown" outside [0, kBatchStatusCount).
const char* batchStatusName(int status);

struct BatchProblem {
  std::shared_ptr<const Program> program;
  // Model variables: program->nVars() columns. Shared by every curve (point i
  // of a curve reads element i; at least the longest curve long) or, with
  // xPerCurve, laid out like y.
  const double* const* x = nullptr;
  int nVars = 0;
  bool xPerCurve = false;
  const double* y = nullptr;
  int64_t yLength = 0;
  int64_t nCurves = 0;
  // Curve c is y[offsets[c], offsets[c+1]) (nCurves + 1 nondecreasing
  // integers, the last at most yLength); or, with offsets null, y[c*n, (c+1)*n).
  const double* offsets = nullptr;
  int64_t pointsPerCurve = 0;
  const double* sigma = nullptr;  // laid out like y, or null
  // Starts: p values shared by every curve, or nCurves x p.
  const double* p0 = nullptr;
  bool p0PerCurve = false;
  // Bounds: null (none), or p values (shared) or nCurves x p (boundsPerCurve)
  // each; +-Infinity leaves a side open.
  const double* lower = nullptr;
  const double* upper = nullptr;
  bool boundsPerCurve = false;
  Loss loss = Loss::Linear;
  double fScale = 1.0;
  Estimator estimator = Estimator::LeastSquares;
  bool absoluteSigma = false;
  // Solver options (lm.hpp, LMOptions; maxFev 0 means 100 (p + 1)).
  double ftol = 1.49012e-8, xtol = 1.49012e-8, gtol = 0.0, factor = 100.0;
  int64_t maxFev = 0;
  // Asked before each curve; null: never stops.
  CancelCheck* cancel = nullptr;
};

// Rows of nCurves (p per curve for params and stdErrors).
struct BatchOutput {
  double* params = nullptr;
  double* stdErrors = nullptr;
  double* chi2 = nullptr;
  double* iterations = nullptr;
  double* nfev = nullptr;
  uint8_t* status = nullptr;
};

int64_t fitCurves(const BatchProblem& problem, int64_t curveStart, int64_t curveEnd, const BatchOutput& out);

// y ln(y/f) + f - y for y >= 0 and f > 0 (0 ln 0 = 0): one term of half the
// Poisson deviance, computed without cancellation when f is close to y.
double poissonDevianceTerm(double y, double f);

}  // namespace nlfit
