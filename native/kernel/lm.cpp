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
#include <limits>
#include <sstream>
#include <stdexcept>

#include "tsqr.hpp"

namespace nlfit {

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kDwarf = std::numeric_limits<double>::min();

double norm(const std::vector<double>& v) { return stableNorm(v.data(), static_cast<int64_t>(v.size())); }

// |D v|: the norm of v in the scaled variables.
double scaledNorm(const std::vector<double>& diag, const std::vector<double>& v) {
  std::vector<double> dv(v.size());
  for (size_t j = 0; j < v.size(); ++j) dv[j] = diag[j] * v[j];
  return norm(dv);
}

// Solves min |[R; D P^T] z - [qtb; 0]| for the pivoted upper triangle r,
// rotating the diagonal D (already including sqrt(par)) into r with Givens
// rotations. Keeps r's upper triangle; stores the rotated triangle S^T in r's
// strict lower triangle and S's diagonal in sdiag (lmpar needs them).
void qrsolv(int n, std::vector<double>& r, const std::vector<int>& ipvt, const std::vector<double>& d,
            const std::vector<double>& qtb, std::vector<double>& x, std::vector<double>& sdiag) {
  auto R = [&](int i, int j) -> double& { return r[i + static_cast<size_t>(j) * n]; };
  std::vector<double> wa(qtb.begin(), qtb.begin() + n);
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
  std::vector<double> wa1(n), wa2(n);
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
  double dxnorm = norm(wa2);
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
    const double t = norm(wa1);
    parl = ((fp / delta) / t) / t;
  }
  // Upper bound from the scaled gradient.
  for (int j = 0; j < n; ++j) {
    double sum = 0.0;
    for (int i = 0; i <= j; ++i) sum += R(i, j) * qtb[i];
    wa1[j] = sum / diag[ipvt[j]];
  }
  const double gnorm = norm(wa1);
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
    dxnorm = norm(wa2);
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
    const double t = norm(wa1);
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
std::vector<double> freeColumnsFactor(const double* R, int p, const std::vector<int>& free) {
  const int q = p + 1;
  const int n = static_cast<int>(free.size());
  const int c = n + 1;
  std::vector<double> a(static_cast<size_t>(q) * c);  // column major, q rows
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
  std::vector<double> out(static_cast<size_t>(c) * c, 0.0);
  for (int i = 0; i < c; ++i)
    for (int j = i; j < c; ++j) out[i * c + j] = A(i, j);
  return out;
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
  constexpr double kMargin = 1e-10;
  std::vector<double> x(x0, x0 + p);
  for (int j = 0; j < p; ++j) {
    const double l = lower[j], u = upper[j];
    if (x[j] > l && x[j] < u) continue;
    x[j] = x[j] <= l ? l + kMargin * std::max(1.0, std::fabs(l)) : u - kMargin * std::max(1.0, std::fabs(u));
    if (!(x[j] > l && x[j] < u)) x[j] = l + 0.5 * (u - l);
  }
  return x;
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
  std::vector<double> r, qtf, acnorm;
  std::vector<int> ipvt;
  pivotedFactor(R, p, r, ipvt, qtf, acnorm);
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
  std::vector<double> inv(static_cast<size_t>(p) * p, 0.0);
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
    : p_(p), options_(options), x_(x0, x0 + p), trial_(x0, x0 + p), step_(p), diag_(p, 0.0) {
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
  auto finite = [](double v) { return std::isfinite(v); };
  bounded_ = std::any_of(options_.lower.begin(), options_.lower.end(), finite) ||
             std::any_of(options_.upper.begin(), options_.upper.end(), finite);
  if (!bounded_) return;
  const double inf = std::numeric_limits<double>::infinity();
  lower_ = options_.lower.empty() ? std::vector<double>(p, -inf) : options_.lower;
  upper_ = options_.upper.empty() ? std::vector<double>(p, inf) : options_.upper;
  x_ = feasibleStart(p, x0, lower_, upper_);
  trial_ = x_;
  boxedStart_.resize(p);
  for (int j = 0; j < p; ++j) boxedStart_[j] = std::min(std::max(x0[j], lower_[j]), upper_[j]);
  active_.assign(p, static_cast<uint8_t>(BoundState::Free));
}

std::vector<uint8_t> LevenbergMarquardt::activeMask() const {
  std::vector<uint8_t> states(p_, static_cast<uint8_t>(BoundState::Free));
  if (bounded_ && !factorAtX_.empty()) boundStates(factorAtX_.data(), p_, x_, lower_, upper_, states);
  return states;
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
  std::vector<double> sdiag(p_);
  lmpar(p_, r_, ipvt_, diag_, qtf_, delta_, par_, step_, sdiag);
  for (int j = 0; j < p_; ++j) {
    step_[j] = -step_[j];
    trial_[j] = x_[j] + step_[j];
  }
  pnorm_ = scaledNorm(diag_, step_);
  if (firstStep_) delta_ = std::min(delta_, pnorm_);
  // Predicted reduction and directional derivative from the linear model.
  std::vector<double> jp(p_, 0.0);
  for (int j = 0; j < p_; ++j) {
    const double t = step_[ipvt_[j]];
    for (int i = 0; i <= j; ++i) jp[i] += r_[i + static_cast<size_t>(j) * p_] * t;
  }
  const double t1 = norm(jp) / fnorm_;
  const double t2 = std::sqrt(par_) * pnorm_ / fnorm_;
  prered_ = t1 * t1 + t2 * t2 / 0.5;
  dirder_ = -(t1 * t1 + t2 * t2);
}

void LevenbergMarquardt::computeBoundedStep() {
  const uint8_t kFree = static_cast<uint8_t>(BoundState::Free);
  std::vector<uint8_t> fixed(p_);
  for (int j = 0; j < p_; ++j) fixed[j] = active_[j] != kFree;
  const double startPar = par_;
  // The step problem of the free set: pivoted triangle, rotated residual and
  // scaling, indexed by position in `free`.
  std::vector<int> free, ipvt;
  std::vector<double> r, qtf, acnorm, diag, freeStep, d(p_);
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
      const std::vector<double> reduced = freeColumnsFactor(factorAtX_.data(), p_, free);
      pivotedFactor(reduced.data(), n, r, ipvt, qtf, acnorm);
      diag.resize(n);
      for (int k = 0; k < n; ++k) diag[k] = diag_[free[k]];
    }
    freeStep.assign(n, 0.0);
    std::vector<double> sdiag(n);
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
  std::vector<double> reach(p_, std::numeric_limits<double>::infinity());
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
    std::vector<double> jp(n, 0.0);
    for (int j = 0; j < n; ++j) {
      const double t = d[free[ipvt[j]]];
      for (int i = 0; i <= j; ++i) jp[i] += r[i + static_cast<size_t>(j) * n] * t;
    }
    const double t1 = norm(jp) / fnorm_;
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

}  // namespace nlfit
