// Levenberg-Marquardt over reduced factors; see lm.hpp for the protocol.
//
// Notation follows Moré (1978): D is the diagonal scaling, delta the trust
// region radius, par the Levenberg-Marquardt parameter, and a trial step p
// solves min |r + J p| subject to |D p| <= delta (approximately: within 10%).
// The ratio of actual to predicted reduction decides acceptance (>= 1e-4) and
// how delta changes; the convergence tests are lmder's.
//
// Bounds l <= x <= u: an active-set trust-region step. Let g = J^T r. At x a
// variable is active when it sits exactly on a bound and -g_j does not point
// into the box (g_j >= 0 at l_j, g_j <= 0 at u_j): no first-order decrease
// is possible by moving it, so it is held fixed. The step d solves Moré's
// subproblem for the free set F only, min |r + J_F d_F| subject to
// |D_F d_F| <= delta, with D restricted to F; J_F's triangular factor is a
// fresh QR of the columns F (and the residual column) of the told factor,
// which is valid because R^T R = [J r]^T [J r]. A free variable on a bound
// that d would move out of the box is fixed too and d recomputed (at most p
// times): this guarantees a step of positive length. Then x + alpha d with
// the largest alpha in (0, 1] that stays in the box is the trial point, and
// the variable that limits alpha is set to its bound exactly, so iterates sit
// on bounds bit-exactly and "on a bound" needs no tolerance.
//   The predicted reduction of a shortened step s = alpha d is that of the
// linear model for s itself, -(2 c^T R_J s + |R_J s|^2) / |r|^2 with c the
// rotated residual (no cancellation: each term is computed directly). A
// shortened step was limited by a bound, not by the trust region, so it
// never shrinks delta when it succeeds (delta = max(delta, 2 |D s|) instead
// of lmder's 2 |D s|) and its small size is no sign of convergence: the ftol
// tests are not applied to it (the xtol tests, which look at delta, are).
// The gtol test uses the projected gradient (active components are zero):
// at a point where every variable is active it is exactly zero, a KKT point,
// and the fit ends with status gtol.
//   Why an active set rather than Coleman and Li's reflective interior
// method (scipy's trf): it keeps lmder's step, scaling and tests unchanged on
// the free subspace (so unbounded fits are untouched), and it reaches a
// bound exactly instead of approaching it asymptotically, which gives a
// clean active mask and a covariance for the free parameters.
#include "lm.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "bytecode.hpp"
#include "tsqr.hpp"

namespace nlfit {

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kDwarf = std::numeric_limits<double>::min();

// |D v|: the norm of v in the scaled variables. (Scratch on the stack here
// and below: p <= kMaxParams, and a step allocates nothing, which matters
// when the batch fitter runs millions of small fits.)
double scaledNorm(const std::vector<double>& diag, const std::vector<double>& v) {
  double dv[kMaxParams];
  for (size_t j = 0; j < v.size(); ++j) dv[j] = diag[j] * v[j];
  return stableNorm(dv, static_cast<int64_t>(v.size()));
}

// Solves min |[R; D P^T] z - [qtb; 0]| for the pivoted upper triangle r,
// rotating the diagonal D (already including sqrt(par)) into r with Givens
// rotations. Keeps r's upper triangle; stores the rotated triangle S^T in r's
// strict lower triangle and S's diagonal in sdiag (lmpar needs them).
void qrsolv(int n, std::vector<double>& r, const std::vector<int>& ipvt, const double* d,
            const std::vector<double>& qtb, std::vector<double>& x, std::vector<double>& sdiag) {
  auto R = [&](int i, int j) -> double& { return r[i + static_cast<size_t>(j) * n]; };
  double wa[kMaxParams];
  std::copy(qtb.begin(), qtb.begin() + n, wa);
  for (int j = 0; j < n; ++j) {
    for (int i = j; i < n; ++i) R(i, j) = R(j, i);
    x[j] = R(j, j);
  }
  for (int j = 0; j < n; ++j) {
    const double dj = d[ipvt[j]];
    if (dj != 0.0) {
      std::fill(sdiag.begin() + j, sdiag.end(), 0.0);
      sdiag[j] = dj;
      double qtbpj = 0.0;
      for (int k = j; k < n; ++k) {
        if (sdiag[k] == 0.0) continue;
        double c, s;
        if (std::fabs(R(k, k)) < std::fabs(sdiag[k])) {
          const double cotan = R(k, k) / sdiag[k];
          s = 0.5 / std::sqrt(0.25 + 0.25 * cotan * cotan);
          c = s * cotan;
        } else {
          const double tan = sdiag[k] / R(k, k);
          c = 0.5 / std::sqrt(0.25 + 0.25 * tan * tan);
          s = c * tan;
        }
        R(k, k) = c * R(k, k) + s * sdiag[k];
        const double t = c * wa[k] + s * qtbpj;
        qtbpj = -s * wa[k] + c * qtbpj;
        wa[k] = t;
        for (int i = k + 1; i < n; ++i) {
          const double u = c * R(i, k) + s * sdiag[i];
          sdiag[i] = -s * R(i, k) + c * sdiag[i];
          R(i, k) = u;
        }
      }
    }
    sdiag[j] = R(j, j);
    R(j, j) = x[j];
  }
  // A zero on S's diagonal means a singular system: take the least-squares
  // solution with the trailing components set to zero.
  int nsing = n;
  for (int j = 0; j < n; ++j) {
    if (sdiag[j] == 0.0 && nsing == n) nsing = j;
    if (nsing < n) wa[j] = 0.0;
  }
  for (int j = nsing - 1; j >= 0; --j) {
    double sum = 0.0;
    for (int i = j + 1; i < nsing; ++i) sum += R(i, j) * wa[i];
    wa[j] = (wa[j] - sum) / sdiag[j];
  }
  for (int j = 0; j < n; ++j) x[ipvt[j]] = wa[j];
}

// Finds par >= 0 such that the step x of the damped problem satisfies
// |D x| within 10% of delta (or par = 0 if the Gauss-Newton step is inside),
// by Moré's safeguarded Newton iteration on phi(par) = |D x(par)| - delta.
void lmpar(int n, std::vector<double>& r, const std::vector<int>& ipvt, const std::vector<double>& diag,
           const std::vector<double>& qtb, double delta, double& par, std::vector<double>& x,
           std::vector<double>& sdiag) {
  auto R = [&](int i, int j) -> double& { return r[i + static_cast<size_t>(j) * n]; };
  double wa1[kMaxParams], wa2[kMaxParams] = {};
  // Gauss-Newton direction (least squares if R is singular).
  int nsing = n;
  for (int j = 0; j < n; ++j) {
    wa1[j] = qtb[j];
    if (R(j, j) == 0.0 && nsing == n) nsing = j;
    if (nsing < n) wa1[j] = 0.0;
  }
  for (int j = nsing - 1; j >= 0; --j) {
    wa1[j] /= R(j, j);
    const double t = wa1[j];
    for (int i = 0; i < j; ++i) wa1[i] -= R(i, j) * t;
  }
  for (int j = 0; j < n; ++j) x[ipvt[j]] = wa1[j];

  for (int j = 0; j < n; ++j) wa2[j] = diag[j] * x[j];
  double dxnorm = stableNorm(wa2, n);
  double fp = dxnorm - delta;
  if (fp <= 0.1 * delta) {
    par = 0.0;
    return;
  }
  // Lower bound from the Newton step at par = 0 (only if R is nonsingular).
  double parl = 0.0;
  if (nsing == n) {
    for (int j = 0; j < n; ++j) {
      const int l = ipvt[j];
      wa1[j] = diag[l] * (wa2[l] / dxnorm);
    }
    for (int j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int i = 0; i < j; ++i) sum += R(i, j) * wa1[i];
      wa1[j] = (wa1[j] - sum) / R(j, j);
    }
    const double t = stableNorm(wa1, n);
    parl = ((fp / delta) / t) / t;
  }
  // Upper bound from the scaled gradient.
  for (int j = 0; j < n; ++j) {
    double sum = 0.0;
    for (int i = 0; i <= j; ++i) sum += R(i, j) * qtb[i];
    wa1[j] = sum / diag[ipvt[j]];
  }
  const double gnorm = stableNorm(wa1, n);
  double paru = gnorm / delta;
  if (paru == 0.0) paru = kDwarf / std::min(delta, 0.1);

  par = std::min(std::max(par, parl), paru);
  if (par == 0.0) par = gnorm / dxnorm;

  for (int iter = 1;; ++iter) {
    if (par == 0.0) par = std::max(kDwarf, 0.001 * paru);
    const double sp = std::sqrt(par);
    for (int j = 0; j < n; ++j) wa1[j] = sp * diag[j];
    qrsolv(n, r, ipvt, wa1, qtb, x, sdiag);
    for (int j = 0; j < n; ++j) wa2[j] = diag[j] * x[j];
    dxnorm = stableNorm(wa2, n);
    const double previous = fp;
    fp = dxnorm - delta;
    if (std::fabs(fp) <= 0.1 * delta || (parl == 0.0 && fp <= previous && previous < 0.0) || iter == 10) break;
    // Newton correction.
    for (int j = 0; j < n; ++j) {
      const int l = ipvt[j];
      wa1[j] = diag[l] * (wa2[l] / dxnorm);
    }
    for (int j = 0; j < n; ++j) {
      wa1[j] /= sdiag[j];
      const double t = wa1[j];
      for (int i = j + 1; i < n; ++i) wa1[i] -= R(i, j) * t;
    }
    const double t = stableNorm(wa1, n);
    const double parc = ((fp / delta) / t) / t;
    if (fp > 0.0) parl = std::max(parl, par);
    if (fp < 0.0) paru = std::min(paru, par);
    par = std::max(parl, par + parc);
  }
}

bool allFinite(const double* v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) return false;
  return true;
}

// sqrt(|Q^T r|^2 + rest^2): the residual norm held in a factor's last column.
double residualNorm(const double* R, int p) { return stableNorm(R + p, p + 1, p + 1); }

// The factor ((n+1) x (n+1), row major) of [J_F | r] for the n variables in
// `free`: Householder QR of those columns of R and of its last column
// ((p+1) rows each). R^T R = [J r]^T [J r], so the columns of R have the
// inner products of the columns of [J r], and so does the result.
void freeColumnsFactor(const double* R, int p, const std::vector<int>& free, std::vector<double>& a,
                       std::vector<double>& out) {
  const int q = p + 1;
  const int n = static_cast<int>(free.size());
  const int c = n + 1;
  a.resize(static_cast<size_t>(q) * c);  // column major, q rows; every entry is written
  auto A = [&](int i, int j) -> double& { return a[i + static_cast<size_t>(j) * q]; };
  for (int i = 0; i < q; ++i) {
    for (int k = 0; k < n; ++k) A(i, k) = R[i * q + free[k]];
    A(i, n) = R[i * q + p];
  }
  for (int k = 0; k < c; ++k) {
    const double s = stableNorm(&A(k, k), q - k);
    if (s == 0.0) continue;
    const double x0 = A(k, k);
    const double beta = x0 >= 0.0 ? -s : s;
    A(k, k) = x0 - beta;
    const double scale = 1.0 / (s * (s + std::fabs(x0)));
    for (int j = k + 1; j < c; ++j) {
      double dot = 0.0;
      for (int i = k; i < q; ++i) dot += A(i, k) * A(i, j);
      const double f = dot * scale;
      for (int i = k; i < q; ++i) A(i, j) -= f * A(i, k);
    }
    A(k, k) = beta;
  }
  out.assign(static_cast<size_t>(c) * c, 0.0);
  for (int i = 0; i < c; ++i)
    for (int j = i; j < c; ++j) out[i * c + j] = A(i, j);
}

// BoundState of each variable at x given the factor R at x (see the top of
// this file): on a bound, exactly, with g = R_J^T c not pointing inward.
void boundStates(const double* R, int p, const std::vector<double>& x, const std::vector<double>& lower,
                 const std::vector<double>& upper, std::vector<uint8_t>& states) {
  const int q = p + 1;
  states.assign(p, static_cast<uint8_t>(BoundState::Free));
  for (int j = 0; j < p; ++j) {
    if (x[j] != lower[j] && x[j] != upper[j]) continue;
    double g = 0.0;
    for (int i = 0; i <= j; ++i) g += R[i * q + j] * R[i * q + p];
    if (x[j] == lower[j] && g >= 0.0) states[j] = static_cast<uint8_t>(BoundState::AtLower);
    else if (x[j] == upper[j] && g <= 0.0) states[j] = static_cast<uint8_t>(BoundState::AtUpper);
  }
}

// The shortest decimal text (at most 17 digits) that reads back as v.
std::string shortestText(double v) {
  std::string text;
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream out;
    out.precision(digits);
    out << v;
    text = out.str();
    if (std::strtod(text.c_str(), nullptr) == v) break;
  }
  return text;
}

// Rejects bounds that leave a parameter no feasible value, or a single one.
void validateBounds(int p, const std::vector<double>& lower, const std::vector<double>& upper) {
  auto fail = [](const std::string& message) { throw std::invalid_argument(message); };
  auto checkSize = [&](const std::vector<double>& bound, const char* name) {
    if (!bound.empty() && static_cast<int>(bound.size()) != p) {
      fail("Expected " + std::to_string(p) + " values for " + name + " (one per parameter) but received " +
           std::to_string(bound.size()));
    }
  };
  checkSize(lower, "lower");
  checkSize(upper, "upper");
  const double inf = std::numeric_limits<double>::infinity();
  for (int j = 0; j < p; ++j) {
    const double l = lower.empty() ? -inf : lower[j];
    const double u = upper.empty() ? inf : upper[j];
    const std::string index = "[" + std::to_string(j) + "]";
    if (std::isnan(l)) fail("Expected a number for lower" + index + " but received NaN");
    if (std::isnan(u)) fail("Expected a number for upper" + index + " but received NaN");
    const std::string parameter = "parameter " + std::to_string(j);
    if (l == inf) fail("Expected lower" + index + " < Infinity: " + parameter + " has no feasible value");
    if (u == -inf) fail("Expected upper" + index + " > -Infinity: " + parameter + " has no feasible value");
    const std::string values = shortestText(l) + (l > u ? " > " : " = ") + shortestText(u);
    if (l > u) fail("Expected lower" + index + " <= upper" + index + " but received " + values);
    if (l == u) {
      fail("Expected lower" + index + " < upper" + index + " but received " + values + ": " + parameter +
           " cannot move, so fix it (leave it out of the fitted parameters) instead of bounding it");
    }
  }
}

}  // namespace

std::vector<double> feasibleStart(int p, const double* x0, const std::vector<double>& lower,
                                  const std::vector<double>& upper) {
  std::vector<double> x;
  feasibleStartInto(p, x0, lower, upper, x);
  return x;
}

void feasibleStartInto(int p, const double* x0, const std::vector<double>& lower, const std::vector<double>& upper,
                       std::vector<double>& x) {
  constexpr double kMargin = 1e-10;
  x.assign(x0, x0 + p);
  for (int j = 0; j < p; ++j) {
    const double l = lower[j], u = upper[j];
    if (x[j] > l && x[j] < u) continue;
    x[j] = x[j] <= l ? l + kMargin * std::max(1.0, std::fabs(l)) : u - kMargin * std::max(1.0, std::fabs(u));
    if (!(x[j] > l && x[j] < u)) x[j] = l + 0.5 * (u - l);
  }
}

void pivotedFactor(const double* R, int p, std::vector<double>& r, std::vector<int>& ipvt,
                   std::vector<double>& qtf, std::vector<double>& acnorm) {
  const int q = p + 1;
  r.assign(static_cast<size_t>(p) * p, 0.0);
  ipvt.resize(p);
  qtf.resize(p);
  acnorm.resize(p);
  auto M = [&](int i, int j) -> double& { return r[i + static_cast<size_t>(j) * p]; };
  for (int i = 0; i < p; ++i) {
    for (int j = 0; j < p; ++j) M(i, j) = R[i * q + j];
    qtf[i] = R[i * q + p];
  }
  for (int j = 0; j < p; ++j) {
    acnorm[j] = stableNorm(&M(0, j), p);
    ipvt[j] = j;
  }
  for (int k = 0; k < p; ++k) {
    // Pivot: the remaining column of largest norm (recomputed exactly; p is small).
    int best = k;
    double bestNorm = -1.0;
    for (int j = k; j < p; ++j) {
      const double nj = stableNorm(&M(k, j), p - k);
      if (nj > bestNorm) {
        bestNorm = nj;
        best = j;
      }
    }
    if (best != k) {
      for (int i = 0; i < p; ++i) std::swap(M(i, k), M(i, best));
      std::swap(ipvt[k], ipvt[best]);
    }
    const double s = stableNorm(&M(k, k), p - k);
    if (s == 0.0 || !std::isfinite(s)) continue;
    const double x0 = M(k, k);
    const double beta = x0 >= 0.0 ? -s : s;
    M(k, k) = x0 - beta;
    const double scale = 1.0 / (s * (s + std::fabs(x0)));
    for (int j = k + 1; j <= p; ++j) {
      double* c = j < p ? &M(0, j) : qtf.data();
      double dot = 0.0;
      for (int i = k; i < p; ++i) dot += M(i, k) * c[i];
      const double f = dot * scale;
      for (int i = k; i < p; ++i) c[i] -= f * M(i, k);
    }
    M(k, k) = beta;
    for (int i = k + 1; i < p; ++i) M(i, k) = 0.0;
  }
}

int covarianceFromFactor(const double* R, int p, double* cov) {
  CovarianceWorkspace workspace;
  return covarianceFromFactor(R, p, cov, workspace);
}

int covarianceFromFactor(const double* R, int p, double* cov, CovarianceWorkspace& workspace) {
  std::vector<double>& r = workspace.r;
  std::vector<int>& ipvt = workspace.ipvt;
  pivotedFactor(R, p, r, ipvt, workspace.qtf, workspace.acnorm);
  auto M = [&](int i, int j) { return r[i + static_cast<size_t>(j) * p]; };
  std::fill(cov, cov + static_cast<size_t>(p) * p, std::numeric_limits<double>::infinity());
  if (p == 0) return 0;
  // Numerical rank from the pivoted diagonal: columns whose remaining norm is
  // at rounding level relative to the largest are dependent on the others.
  const double tol = 10.0 * p * kEps * std::fabs(M(0, 0));
  int rank = 0;
  while (rank < p && std::fabs(M(rank, rank)) > tol && std::isfinite(M(rank, rank))) ++rank;
  if (rank < p) return rank;
  // inv(r) by back substitution, column by column (upper triangular).
  std::vector<double>& inv = workspace.inv;
  inv.assign(static_cast<size_t>(p) * p, 0.0);
  auto I = [&](int i, int j) -> double& { return inv[i + static_cast<size_t>(j) * p]; };
  for (int j = 0; j < p; ++j) {
    I(j, j) = 1.0 / M(j, j);
    for (int i = j - 1; i >= 0; --i) {
      double sum = 0.0;
      for (int k = i + 1; k <= j; ++k) sum += M(i, k) * I(k, j);
      I(i, j) = -sum / M(i, i);
    }
  }
  // (J^T J)^-1 = P inv(r) inv(r)^T P^T.
  for (int a = 0; a < p; ++a) {
    for (int b = a; b < p; ++b) {
      double sum = 0.0;
      for (int k = std::max(a, b); k < p; ++k) sum += I(a, k) * I(b, k);
      cov[ipvt[a] * p + ipvt[b]] = sum;
      cov[ipvt[b] * p + ipvt[a]] = sum;
    }
  }
  return rank;
}

bool lmSucceeded(LMStatus status) {
  switch (status) {
    case LMStatus::Ftol:
    case LMStatus::Xtol:
    case LMStatus::FtolXtol:
    case LMStatus::Gtol:
    case LMStatus::FtolLimit:
    case LMStatus::XtolLimit:
    case LMStatus::GtolLimit:
      return true;
    default:
      return false;
  }
}

const char* lmStatusName(LMStatus status) {
  switch (status) {
    case LMStatus::Running: return "running";
    case LMStatus::Ftol: return "ftol";
    case LMStatus::Xtol: return "xtol";
    case LMStatus::FtolXtol: return "ftol_xtol";
    case LMStatus::Gtol: return "gtol";
    case LMStatus::MaxFev: return "max_fev";
    case LMStatus::FtolLimit: return "ftol_limit";
    case LMStatus::XtolLimit: return "xtol_limit";
    case LMStatus::GtolLimit: return "gtol_limit";
    case LMStatus::NonFiniteStart: return "nonfinite_start";
    case LMStatus::Aborted: return "aborted";
    case LMStatus::NonFiniteEdge: return "nonfinite_edge";
  }
  return "unknown";
}

std::string lmStatusMessage(LMStatus status, const LMOptions& o) {
  std::ostringstream out;
  switch (status) {
    case LMStatus::Running: out << "The fit is still running."; break;
    case LMStatus::Ftol:
      out << "Both actual and predicted relative reductions in the sum of squares are at most ftol = " << o.ftol << ".";
      break;
    case LMStatus::Xtol:
      out << "The relative change of the parameters between two iterates is at most xtol = " << o.xtol << ".";
      break;
    case LMStatus::FtolXtol:
      out << "Both the sum of squares (ftol = " << o.ftol << ") and the parameters (xtol = " << o.xtol
          << ") have converged.";
      break;
    case LMStatus::Gtol:
      out << "The residual is orthogonal to every Jacobian column within gtol = " << o.gtol << ".";
      break;
    case LMStatus::MaxFev:
      out << "The evaluation limit maxFev = " << o.maxFev << " was reached before convergence.";
      break;
    case LMStatus::FtolLimit:
      out << "No further reduction in the sum of squares is possible in double precision (ftol = " << o.ftol
          << " is below machine precision).";
      break;
    case LMStatus::XtolLimit:
      out << "No further improvement of the parameters is possible in double precision (xtol = " << o.xtol
          << " is below machine precision).";
      break;
    case LMStatus::GtolLimit:
      out << "The residual is orthogonal to the Jacobian columns to machine precision.";
      break;
    case LMStatus::NonFiniteStart:
      out << "The model or its derivatives are not finite at the starting point.";
      break;
    case LMStatus::Aborted: out << "The fit was aborted."; break;
    case LMStatus::NonFiniteEdge:
      out << "The fit stopped at the edge of the region where the model is finite: the trial points around the "
             "last parameters gave non-finite values, so they need not be an optimum.";
      break;
  }
  return out.str();
}

LevenbergMarquardt::LevenbergMarquardt(int p, const double* x0, const LMOptions& options)
    : p_(p), options_(options) {
  if (p < 1 || p > kMaxParams) {
    throw std::invalid_argument("Expected between 1 and " + std::to_string(kMaxParams) + " parameters but received " +
                                std::to_string(p));
  }
  if (options_.maxFev <= 0) options_.maxFev = 100 * static_cast<int64_t>(p + 1);
  validateBounds(p, options_.lower, options_.upper);
  if (!options_.diag.empty()) {
    if (options_.diag.size() != static_cast<size_t>(p)) {
      throw std::invalid_argument("Expected " + std::to_string(p) + " scale values but received " + std::to_string(options_.diag.size()));
    }
    for (int j = 0; j < p; ++j) {
      if (!(options_.diag[j] > 0.0) || !std::isfinite(options_.diag[j])) {
        throw std::invalid_argument("Expected a finite number > 0 for diag[" + std::to_string(j) + "]");
      }
    }
  }
  start(x0);
}

void LevenbergMarquardt::start(const double* x0) {
  const int p = p_;
  status_ = LMStatus::Running;
  atStart_ = true;
  firstStep_ = true;
  truncated_ = false;
  x_.assign(x0, x0 + p);
  step_.assign(p, 0.0);
  diag_.assign(p, 0.0);
  factorAtX_.clear();
  r_.clear();
  qtf_.clear();
  acnorm_.clear();
  ipvt_.clear();
  fnorm_ = xnorm_ = delta_ = par_ = gnorm_ = pnorm_ = prered_ = dirder_ = 0.0;
  iterations_ = nfev_ = njev_ = nonFiniteTrials_ = 0;
  auto finite = [](double v) { return std::isfinite(v); };
  bounded_ = std::any_of(options_.lower.begin(), options_.lower.end(), finite) ||
             std::any_of(options_.upper.begin(), options_.upper.end(), finite);
  if (!bounded_) {
    trial_ = x_;
    lower_.clear();
    upper_.clear();
    active_.clear();
    boxedStart_.clear();
    return;
  }
  const double inf = std::numeric_limits<double>::infinity();
  if (options_.lower.empty()) lower_.assign(p, -inf);
  else lower_ = options_.lower;
  if (options_.upper.empty()) upper_.assign(p, inf);
  else upper_ = options_.upper;
  feasibleStartInto(p, x0, lower_, upper_, x_);
  trial_ = x_;
  boxedStart_.resize(p);
  for (int j = 0; j < p; ++j) boxedStart_[j] = std::min(std::max(x0[j], lower_[j]), upper_[j]);
  active_.assign(p, static_cast<uint8_t>(BoundState::Free));
}

void LevenbergMarquardt::reset(const double* x0) { start(x0); }

void LevenbergMarquardt::reset(const double* x0, const double* lower, const double* upper) {
  const int p = p_;
  // The common case, valid bounds, is checked without building messages;
  // validateBounds says what is wrong otherwise.
  bool valid = true;
  const double inf = std::numeric_limits<double>::infinity();
  for (int j = 0; j < p && valid; ++j) {
    const double l = lower ? lower[j] : -inf, u = upper ? upper[j] : inf;
    valid = l < u && l != inf && u != -inf;  // false for NaN too
  }
  if (lower) options_.lower.assign(lower, lower + p);
  else options_.lower.clear();
  if (upper) options_.upper.assign(upper, upper + p);
  else options_.upper.clear();
  if (!valid) {
    validateBounds(p, options_.lower, options_.upper);
    throw std::invalid_argument("invalid bounds");  // not reached: validateBounds throws
  }
  start(x0);
}

std::vector<uint8_t> LevenbergMarquardt::activeMask() const {
  std::vector<uint8_t> states;
  activeMask(states);
  return states;
}

void LevenbergMarquardt::activeMask(std::vector<uint8_t>& states) const {
  states.assign(p_, static_cast<uint8_t>(BoundState::Free));
  if (bounded_ && !factorAtX_.empty()) boundStates(factorAtX_.data(), p_, x_, lower_, upper_, states);
}

void LevenbergMarquardt::useJacobian(const double* R) {
  ++njev_;
  pivotedFactor(R, p_, r_, ipvt_, qtf_, acnorm_);
  if (bounded_) boundStates(R, p_, x_, lower_, upper_, active_);
  const bool fixedScale = !options_.diag.empty();
  if (firstStep_) {
    for (int j = 0; j < p_; ++j) diag_[j] = fixedScale ? options_.diag[j] : acnorm_[j] == 0.0 ? 1.0 : acnorm_[j];
    xnorm_ = scaledNorm(diag_, x_);
    // The initial step bound measures the start's scale; a start moved into
    // the box measures it by its projection onto the box, not by the
    // 1e-10 margin (a start of 0 on a bound of 0 would otherwise give a step
    // bound of 1e-8 and stall the ftol test).
    delta_ = options_.factor * (bounded_ ? scaledNorm(diag_, boxedStart_) : xnorm_);
    if (delta_ == 0.0) delta_ = options_.factor;
  }
  // Cosine of the largest angle between the residual and a Jacobian column.
  gnorm_ = 0.0;
  if (fnorm_ != 0.0) {
    for (int j = 0; j < p_; ++j) {
      const int l = ipvt_[j];
      if (acnorm_[l] == 0.0) continue;
      // The projected gradient: active components are zero.
      if (bounded_ && active_[l] != static_cast<uint8_t>(BoundState::Free)) continue;
      double sum = 0.0;
      for (int i = 0; i <= j; ++i) sum += r_[i + static_cast<size_t>(j) * p_] * (qtf_[i] / fnorm_);
      gnorm_ = std::max(gnorm_, std::fabs(sum / acnorm_[l]));
    }
  }
  if (gnorm_ <= options_.gtol) return finish(LMStatus::Gtol);
  if (!firstStep_ && !fixedScale) {
    for (int j = 0; j < p_; ++j) diag_[j] = std::max(diag_[j], acnorm_[j]);
  }
}

void LevenbergMarquardt::computeStep() {
  if (bounded_) return computeBoundedStep();
  std::vector<double>& sdiag = work_.sdiag;
  sdiag.assign(p_, 0.0);
  lmpar(p_, r_, ipvt_, diag_, qtf_, delta_, par_, step_, sdiag);
  for (int j = 0; j < p_; ++j) {
    step_[j] = -step_[j];
    trial_[j] = x_[j] + step_[j];
  }
  pnorm_ = scaledNorm(diag_, step_);
  if (firstStep_) delta_ = std::min(delta_, pnorm_);
  // Predicted reduction and directional derivative from the linear model.
  double jp[kMaxParams] = {};
  for (int j = 0; j < p_; ++j) {
    const double t = step_[ipvt_[j]];
    for (int i = 0; i <= j; ++i) jp[i] += r_[i + static_cast<size_t>(j) * p_] * t;
  }
  const double t1 = stableNorm(jp, p_) / fnorm_;
  const double t2 = std::sqrt(par_) * pnorm_ / fnorm_;
  prered_ = t1 * t1 + t2 * t2 / 0.5;
  dirder_ = -(t1 * t1 + t2 * t2);
}

void LevenbergMarquardt::computeBoundedStep() {
  const uint8_t kFree = static_cast<uint8_t>(BoundState::Free);
  std::vector<uint8_t>& fixed = work_.fixed;
  fixed.resize(p_);
  for (int j = 0; j < p_; ++j) fixed[j] = active_[j] != kFree;
  const double startPar = par_;
  // The step problem of the free set: pivoted triangle, rotated residual and
  // scaling, indexed by position in `free`.
  std::vector<int>& free = work_.free;
  std::vector<int>& ipvt = work_.ipvt;
  std::vector<double>& r = work_.r;
  std::vector<double>& qtf = work_.qtf;
  std::vector<double>& acnorm = work_.acnorm;
  std::vector<double>& diag = work_.diag;
  std::vector<double>& freeStep = work_.freeStep;
  std::vector<double>& d = work_.d;
  std::vector<double>& sdiag = work_.sdiag;
  d.resize(p_);
  for (;;) {
    free.clear();
    for (int j = 0; j < p_; ++j)
      if (!fixed[j]) free.push_back(j);
    const int n = static_cast<int>(free.size());
    // Only reachable if rounding made the damped step ascend: no descent
    // direction is left in double precision.
    if (n == 0) return finish(LMStatus::FtolLimit);
    if (n == p_) {
      r = r_;
      ipvt = ipvt_;
      qtf = qtf_;
      diag = diag_;
    } else {
      freeColumnsFactor(factorAtX_.data(), p_, free, work_.columns, work_.reduced);
      pivotedFactor(work_.reduced.data(), n, r, ipvt, qtf, acnorm);
      diag.resize(n);
      for (int k = 0; k < n; ++k) diag[k] = diag_[free[k]];
    }
    freeStep.assign(n, 0.0);
    sdiag.assign(n, 0.0);
    par_ = startPar;
    lmpar(n, r, ipvt, diag, qtf, delta_, par_, freeStep, sdiag);
    std::fill(d.begin(), d.end(), 0.0);
    for (int k = 0; k < n; ++k) d[free[k]] = -freeStep[k];
    bool leaves = false;
    for (int j : free) {
      if ((d[j] < 0.0 && x_[j] == lower_[j]) || (d[j] > 0.0 && x_[j] == upper_[j])) {
        fixed[j] = 1;
        leaves = true;
      }
    }
    if (!leaves) break;
  }

  // The largest alpha in (0, 1] with x + alpha d in the box, and which
  // variables reach their bound at it.
  std::vector<double>& reach = work_.reach;
  reach.assign(p_, std::numeric_limits<double>::infinity());
  double alpha = 1.0;
  for (int j : free) {
    if (d[j] == 0.0) continue;
    const double bound = d[j] < 0.0 ? lower_[j] : upper_[j];
    if (!std::isfinite(bound)) continue;
    reach[j] = (bound - x_[j]) / d[j];
    alpha = std::min(alpha, reach[j]);
  }
  truncated_ = alpha < 1.0;
  for (int j = 0; j < p_; ++j) {
    double t = truncated_ ? x_[j] + alpha * d[j] : x_[j] + d[j];
    if (reach[j] <= alpha) t = d[j] < 0.0 ? lower_[j] : upper_[j];
    // Only rounding can put t outside the box here.
    trial_[j] = std::min(std::max(t, lower_[j]), upper_[j]);
    step_[j] = truncated_ ? trial_[j] - x_[j] : d[j];
  }
  pnorm_ = scaledNorm(diag_, step_);
  // lmder bounds the first step bound by the first step; here by the step
  // computed, whether or not a bound shortened it.
  if (firstStep_) delta_ = std::min(delta_, truncated_ ? scaledNorm(diag_, d) : pnorm_);

  if (!truncated_) {
    // The full damped step: lmder's predicted reduction on the free problem.
    const int n = static_cast<int>(free.size());
    double jp[kMaxParams] = {};
    for (int j = 0; j < n; ++j) {
      const double t = d[free[ipvt[j]]];
      for (int i = 0; i <= j; ++i) jp[i] += r[i + static_cast<size_t>(j) * n] * t;
    }
    const double t1 = stableNorm(jp, n) / fnorm_;
    const double t2 = std::sqrt(par_) * pnorm_ / fnorm_;
    prered_ = t1 * t1 + t2 * t2 / 0.5;
    dirder_ = -(t1 * t1 + t2 * t2);
    return;
  }
  // The shortened step s: the linear model's reduction for s itself, from
  // the full factor, relative to |r|^2. u = R_J s / |r|, c = Q^T r / |r|.
  const int q = p_ + 1;
  double cu = 0.0, uu = 0.0;
  for (int i = 0; i < p_; ++i) {
    double u = 0.0;
    for (int j = i; j < p_; ++j) u += factorAtX_[i * q + j] * step_[j];
    u /= fnorm_;
    cu += (factorAtX_[i * q + p_] / fnorm_) * u;
    uu += u * u;
  }
  // Rounding can make a minute step look like an ascent: predict nothing
  // then, so that the step is rejected.
  prered_ = std::max(0.0, -(2.0 * cu + uu));
  dirder_ = cu;
}

void LevenbergMarquardt::tell(const double* R, double fnorm) {
  if (!running()) return;
  const int q = p_ + 1;
  const bool given = !(fnorm < 0.0);
  const bool finite = allFinite(R, static_cast<size_t>(q) * q) && (!given || std::isfinite(fnorm));
  const auto norm = [&]() { return given ? fnorm : residualNorm(R, p_); };
  ++nfev_;
  if (atStart_) {
    atStart_ = false;
    if (!finite) return finish(LMStatus::NonFiniteStart);
    fnorm_ = norm();
    factorAtX_.assign(R, R + static_cast<size_t>(q) * q);
    useJacobian(R);
    if (!running()) return;
    if (fnorm_ == 0.0) return finish(LMStatus::FtolLimit);
    if (nfev_ >= options_.maxFev) return finish(LMStatus::MaxFev);
    computeStep();
    return;
  }

  if (!finite) ++nonFiniteTrials_;
  const double fnorm1 = finite ? norm() : std::numeric_limits<double>::infinity();
  const double actred = (finite && 0.1 * fnorm1 < fnorm_) ? 1.0 - (fnorm1 / fnorm_) * (fnorm1 / fnorm_) : -1.0;
  const double ratio = prered_ != 0.0 ? actred / prered_ : 0.0;

  if (ratio <= 0.25) {
    double shrink = actred >= 0.0 ? 0.5 : 0.5 * dirder_ / (dirder_ + 0.5 * actred);
    if (!finite || 0.1 * fnorm1 >= fnorm_ || shrink < 0.1) shrink = 0.1;
    delta_ = shrink * std::min(delta_, pnorm_ / 0.1);
    par_ /= shrink;
  } else if (par_ == 0.0 || ratio >= 0.75) {
    // A shortened step stopped at a bound, not at the edge of the region.
    delta_ = truncated_ ? std::max(delta_, pnorm_ / 0.5) : pnorm_ / 0.5;
    par_ *= 0.5;
  }

  const bool accepted = ratio >= 1e-4;
  if (accepted) {
    x_ = trial_;
    xnorm_ = scaledNorm(diag_, x_);
    fnorm_ = fnorm1;
    ++iterations_;
    // As in lmder, the first-step bound on delta holds until a step succeeds.
    firstStep_ = false;
  }

  // A step shortened by a bound is small because of the bound: no ftol test.
  const bool ftolMet =
      !truncated_ && std::fabs(actred) <= options_.ftol && prered_ <= options_.ftol && 0.5 * ratio <= 1.0;
  const bool xtolMet = delta_ <= options_.xtol * xnorm_;
  if (accepted) factorAtX_.assign(R, R + static_cast<size_t>(q) * q);
  if (ftolMet && xtolMet) return finish(LMStatus::FtolXtol);
  if (ftolMet) return finish(LMStatus::Ftol);
  // A step bound that collapsed on non-finite trials is no sign of convergence.
  if (xtolMet) return finish(finite ? LMStatus::Xtol : LMStatus::NonFiniteEdge);
  if (fnorm_ == 0.0) return finish(LMStatus::FtolLimit);
  if (nfev_ >= options_.maxFev) return finish(LMStatus::MaxFev);
  if (!truncated_ && std::fabs(actred) <= kEps && prered_ <= kEps && 0.5 * ratio <= 1.0) {
    return finish(LMStatus::FtolLimit);
  }
  if (delta_ <= kEps * xnorm_) return finish(finite ? LMStatus::XtolLimit : LMStatus::NonFiniteEdge);
  if (gnorm_ <= kEps) return finish(LMStatus::GtolLimit);

  if (accepted) {
    useJacobian(R);
    if (!running()) return;
  }
  computeStep();
}


// Checkpoint format (kStateVersion 1). All integers little-endian, doubles as
// their IEEE-754 bits (little-endian), so a restored machine is bit-exact:
//   offset 0   8 bytes  magic "NLFITLMS"
//          8   u32      format version
//         12   u32      p
//         16   u64      payload length N
//         24   N bytes  payload
//     24 + N   u64      FNV-1a 64 of bytes [0, 24 + N)
// The payload lists the members in a fixed order. A vector is a u32 count
// and its elements (f64, i32 or u8); a flag is a u8 0 or 1:
//   options   f64 ftol, xtol, gtol, factor; i64 maxFev; f64[] lower, upper, diag
//   i32 status; flags atStart, firstStep, bounded, truncated
//   f64[] x, trial, step, diag (p each); f64[] factorAtX (0 or (p+1)^2)
//   f64[] r (0 or p^2), qtf, acnorm (0 or p); i32[] ipvt (0 or p)
//   f64 fnorm, xnorm, delta, par, gnorm, pnorm, prered, dirder
//   i64 iterations, nfev, njev, nonFiniteTrials
//   u8[] active (0 or p); f64[] boxedStart (0 or p)
// The bounds the step uses (lower_, upper_) are not stored: restore derives
// them from the options exactly as the constructor does, and checks that the
// stored bounded flag agrees.
namespace {

constexpr char kStateMagic[8] = {'N', 'L', 'F', 'I', 'T', 'L', 'M', 'S'};
constexpr size_t kStateHeaderBytes = 24;
constexpr size_t kStateChecksumBytes = 8;
constexpr int kLastStatus = static_cast<int>(LMStatus::NonFiniteEdge);

uint64_t fnv1a64(const uint8_t* bytes, size_t size) {
  uint64_t hash = 14695981039346656037ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

[[noreturn]] void badState(const std::string& what) { throw std::invalid_argument("invalid solver state: " + what); }

class StateWriter {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void f64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    u64(bits);
  }
  void f64s(const std::vector<double>& v) {
    u32(static_cast<uint32_t>(v.size()));
    for (double d : v) f64(d);
  }
  void i32s(const std::vector<int>& v) {
    u32(static_cast<uint32_t>(v.size()));
    for (int i : v) u32(static_cast<uint32_t>(static_cast<int32_t>(i)));
  }
  void u8s(const std::vector<uint8_t>& v) {
    u32(static_cast<uint32_t>(v.size()));
    bytes_.insert(bytes_.end(), v.begin(), v.end());
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Reads what StateWriter wrote; every read is bounds-checked and names the
// field it was reading when the payload ends early.
class StateReader {
 public:
  StateReader(const uint8_t* bytes, size_t size) : bytes_(bytes), size_(size) {}

  uint8_t u8(const char* field) {
    need(1, field);
    return bytes_[at_++];
  }
  uint32_t u32(const char* field) {
    need(4, field);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(bytes_[at_++]) << (8 * i);
    return v;
  }
  uint64_t u64(const char* field) {
    need(8, field);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(bytes_[at_++]) << (8 * i);
    return v;
  }
  int32_t i32(const char* field) { return static_cast<int32_t>(u32(field)); }
  int64_t i64(const char* field) { return static_cast<int64_t>(u64(field)); }
  double f64(const char* field) {
    const uint64_t bits = u64(field);
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
  bool flag(const char* field) {
    const uint8_t v = u8(field);
    if (v > 1) badState(std::string(field) + " is " + std::to_string(v) + ", not a flag (0 or 1)");
    return v == 1;
  }
  // A vector whose length must be one of `sizes`.
  std::vector<double> f64s(const char* field, std::initializer_list<size_t> sizes) {
    const size_t n = count(field, sizes, 8);
    std::vector<double> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = f64(field);
    return v;
  }
  std::vector<int> i32s(const char* field, std::initializer_list<size_t> sizes) {
    const size_t n = count(field, sizes, 4);
    std::vector<int> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = i32(field);
    return v;
  }
  std::vector<uint8_t> u8s(const char* field, std::initializer_list<size_t> sizes) {
    const size_t n = count(field, sizes, 1);
    std::vector<uint8_t> v(bytes_ + at_, bytes_ + at_ + n);
    at_ += n;
    return v;
  }
  size_t remaining() const { return size_ - at_; }

 private:
  void need(size_t n, const char* field) {
    if (size_ - at_ < n) badState(std::string("the payload ends inside ") + field);
  }
  size_t count(const char* field, std::initializer_list<size_t> sizes, size_t elementBytes) {
    const size_t n = u32(field);
    if (std::find(sizes.begin(), sizes.end(), n) == sizes.end()) {
      std::string allowed;
      for (size_t s : sizes) allowed += (allowed.empty() ? "" : " or ") + std::to_string(s);
      badState(std::string(field) + " has " + std::to_string(n) + " values, expected " + allowed);
    }
    need(n * elementBytes, field);
    return n;
  }

  const uint8_t* bytes_;
  size_t size_;
  size_t at_ = 0;
};

void requireFinite(const std::vector<double>& v, const char* field) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) badState(std::string(field) + "[" + std::to_string(i) + "] is not finite");
  }
}

void requireNonNegative(double v, const char* field) {
  if (!(v >= 0.0)) badState(std::string(field) + " is " + shortestText(v) + ", expected a number >= 0");
}

}  // namespace

std::vector<uint8_t> LevenbergMarquardt::serialize() const {
  StateWriter w;
  for (char c : kStateMagic) w.u8(static_cast<uint8_t>(c));
  w.u32(kStateVersion);
  w.u32(static_cast<uint32_t>(p_));
  w.u64(0);  // payload length, filled in below
  w.f64(options_.ftol);
  w.f64(options_.xtol);
  w.f64(options_.gtol);
  w.f64(options_.factor);
  w.i64(options_.maxFev);
  w.f64s(options_.lower);
  w.f64s(options_.upper);
  w.f64s(options_.diag);
  w.u32(static_cast<uint32_t>(static_cast<int32_t>(status_)));
  w.u8(atStart_);
  w.u8(firstStep_);
  w.u8(bounded_);
  w.u8(truncated_);
  w.f64s(x_);
  w.f64s(trial_);
  w.f64s(step_);
  w.f64s(diag_);
  w.f64s(factorAtX_);
  w.f64s(r_);
  w.f64s(qtf_);
  w.f64s(acnorm_);
  w.i32s(ipvt_);
  for (double v : {fnorm_, xnorm_, delta_, par_, gnorm_, pnorm_, prered_, dirder_}) w.f64(v);
  for (int64_t v : {iterations_, nfev_, njev_, nonFiniteTrials_}) w.i64(v);
  w.u8s(active_);
  w.f64s(boxedStart_);
  std::vector<uint8_t>& bytes = w.bytes();
  const uint64_t payload = bytes.size() - kStateHeaderBytes;
  for (int i = 0; i < 8; ++i) bytes[16 + i] = static_cast<uint8_t>(payload >> (8 * i));
  w.u64(fnv1a64(bytes.data(), bytes.size()));
  return std::move(bytes);
}

LevenbergMarquardt LevenbergMarquardt::restore(const uint8_t* bytes, size_t size) {
  constexpr size_t kMinBytes = kStateHeaderBytes + kStateChecksumBytes;
  if (bytes == nullptr || size < kMinBytes) {
    badState("truncated: " + std::to_string(size) + " bytes, a solver state has at least " + std::to_string(kMinBytes));
  }
  if (std::memcmp(bytes, kStateMagic, sizeof kStateMagic) != 0) badState("not an nlfit solver state (wrong magic)");
  StateReader header(bytes + sizeof kStateMagic, kStateHeaderBytes - sizeof kStateMagic);
  const uint32_t version = header.u32("version");
  if (version != kStateVersion) {
    badState("format version " + std::to_string(version) + " is not supported (this build reads version " +
             std::to_string(kStateVersion) + ")");
  }
  const uint32_t pStored = header.u32("p");
  if (pStored < 1 || pStored > static_cast<uint32_t>(kMaxParams)) {
    badState("p = " + std::to_string(pStored) + " is outside [1, " + std::to_string(kMaxParams) + "]");
  }
  const uint64_t payload = header.u64("payload length");
  const uint64_t expected = size - kMinBytes;
  if (payload != expected) {
    badState(payload > expected ? "truncated: the header announces " + std::to_string(payload) +
                                      " payload bytes but only " + std::to_string(expected) + " follow"
                                : std::to_string(expected - payload) + " bytes follow the " +
                                      std::to_string(payload) + " payload bytes the header announces");
  }
  const size_t end = kStateHeaderBytes + static_cast<size_t>(payload);
  StateReader trailer(bytes + end, kStateChecksumBytes);
  if (trailer.u64("checksum") != fnv1a64(bytes, end)) badState("checksum mismatch: the data is corrupt");

  const int p = static_cast<int>(pStored);
  const size_t sp = static_cast<size_t>(p), q = sp + 1;
  StateReader r(bytes + kStateHeaderBytes, static_cast<size_t>(payload));
  LevenbergMarquardt lm;
  lm.p_ = p;
  LMOptions& o = lm.options_;
  o.ftol = r.f64("ftol");
  o.xtol = r.f64("xtol");
  o.gtol = r.f64("gtol");
  o.factor = r.f64("factor");
  o.maxFev = r.i64("maxFev");
  o.lower = r.f64s("lower", {0, sp});
  o.upper = r.f64s("upper", {0, sp});
  o.diag = r.f64s("diag", {0, sp});
  const int32_t status = r.i32("status");
  if (status < 0 || status > kLastStatus) badState("status " + std::to_string(status) + " is not a solver status");
  lm.status_ = static_cast<LMStatus>(status);
  lm.atStart_ = r.flag("atStart");
  lm.firstStep_ = r.flag("firstStep");
  const bool bounded = r.flag("bounded");
  lm.truncated_ = r.flag("truncated");
  lm.x_ = r.f64s("x", {sp});
  lm.trial_ = r.f64s("trial", {sp});
  lm.step_ = r.f64s("step", {sp});
  lm.diag_ = r.f64s("diag (scaling)", {sp});
  lm.factorAtX_ = r.f64s("factorAtX", {0, q * q});
  lm.r_ = r.f64s("r", {0, sp * sp});
  lm.qtf_ = r.f64s("qtf", {0, sp});
  lm.acnorm_ = r.f64s("acnorm", {0, sp});
  lm.ipvt_ = r.i32s("ipvt", {0, sp});
  for (double* v : {&lm.fnorm_, &lm.xnorm_, &lm.delta_, &lm.par_, &lm.gnorm_, &lm.pnorm_, &lm.prered_, &lm.dirder_}) {
    *v = r.f64("scalars");
  }
  for (int64_t* v : {&lm.iterations_, &lm.nfev_, &lm.njev_, &lm.nonFiniteTrials_}) *v = r.i64("counters");
  lm.active_ = r.u8s("active", {0, sp});
  lm.boxedStart_ = r.f64s("boxedStart", {0, sp});
  if (r.remaining() != 0) badState(std::to_string(r.remaining()) + " bytes follow the last field");

  // The options, as the constructor would accept them.
  for (const auto& [value, name] : {std::pair<double, const char*>{o.ftol, "ftol"}, {o.xtol, "xtol"}, {o.gtol, "gtol"}}) {
    if (!(value >= 0.0) || !std::isfinite(value)) badState(std::string(name) + " is not a finite number >= 0");
  }
  if (!(o.factor > 0.0) || !std::isfinite(o.factor)) badState("factor is not a finite number > 0");
  if (o.maxFev < 1) badState("maxFev is " + std::to_string(o.maxFev) + ", expected >= 1");
  try {
    validateBounds(p, o.lower, o.upper);
  } catch (const std::invalid_argument& e) {
    badState(std::string("bounds: ") + e.what());
  }
  for (size_t j = 0; j < o.diag.size(); ++j) {
    if (!(o.diag[j] > 0.0) || !std::isfinite(o.diag[j])) badState("diag[" + std::to_string(j) + "] is not a finite number > 0");
  }

  // The machine.
  requireFinite(lm.x_, "x");
  requireFinite(lm.trial_, "trial");
  requireFinite(lm.step_, "step");
  requireFinite(lm.diag_, "diag (scaling)");
  requireFinite(lm.factorAtX_, "factorAtX");
  for (const auto& [value, name] : {std::pair<double, const char*>{lm.fnorm_, "fnorm"}, {lm.xnorm_, "xnorm"}, {lm.delta_, "delta"}}) {
    requireNonNegative(value, name);
  }
  const bool haveQR = !lm.r_.empty();
  if (lm.qtf_.empty() == haveQR || lm.acnorm_.empty() == haveQR || lm.ipvt_.empty() == haveQR) {
    badState("r, qtf, acnorm and ipvt must be all present or all absent");
  }
  std::vector<uint8_t> seen(sp, 0);
  for (int k : lm.ipvt_) {
    if (k < 0 || k >= p || seen[static_cast<size_t>(k)]) badState("ipvt is not a permutation of 0.." + std::to_string(p - 1));
    seen[static_cast<size_t>(k)] = 1;
  }
  if (lm.running() && !lm.atStart_ && (lm.factorAtX_.empty() || !haveQR)) {
    badState("a running solver past its start needs the factor at x and its QR");
  }
  if (lm.iterations_ < 0 || lm.njev_ < 0 || lm.nonFiniteTrials_ < 0 || lm.nfev_ < lm.iterations_ ||
      lm.nfev_ < lm.nonFiniteTrials_) {
    badState("the counters are inconsistent (iterations " + std::to_string(lm.iterations_) + ", nfev " +
             std::to_string(lm.nfev_) + ", njev " + std::to_string(lm.njev_) + ", nonFiniteTrials " +
             std::to_string(lm.nonFiniteTrials_) + ")");
  }

  // Bounds: derived from the options as in the constructor.
  auto finite = [](double v) { return std::isfinite(v); };
  lm.bounded_ = std::any_of(o.lower.begin(), o.lower.end(), finite) || std::any_of(o.upper.begin(), o.upper.end(), finite);
  if (bounded != lm.bounded_) badState(bounded ? "bounded, but the options have no finite bound" : "unbounded, but the options have a finite bound");
  if (!lm.bounded_) {
    if (!lm.active_.empty() || !lm.boxedStart_.empty()) badState("an unbounded solver has no active set or boxed start");
    return lm;
  }
  const double inf = std::numeric_limits<double>::infinity();
  lm.lower_ = o.lower.empty() ? std::vector<double>(sp, -inf) : o.lower;
  lm.upper_ = o.upper.empty() ? std::vector<double>(sp, inf) : o.upper;
  if (lm.active_.size() != sp || lm.boxedStart_.size() != sp) badState("a bounded solver needs an active set and a boxed start of p values");
  requireFinite(lm.boxedStart_, "boxedStart");
  for (size_t j = 0; j < sp; ++j) {
    if (lm.active_[j] > static_cast<uint8_t>(BoundState::AtUpper)) badState("active[" + std::to_string(j) + "] is not a bound state");
    if (lm.x_[j] < lm.lower_[j] || lm.x_[j] > lm.upper_[j] || lm.trial_[j] < lm.lower_[j] || lm.trial_[j] > lm.upper_[j]) {
      badState("x[" + std::to_string(j) + "] or trial[" + std::to_string(j) + "] lies outside its bounds");
    }
  }
  return lm;
}

}  // namespace nlfit
