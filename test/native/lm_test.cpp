// Unit tests of the Levenberg-Marquardt state machine (native/kernel/lm.hpp)
// driven the way the engine drives it: at every ask() the residual rows
// [J | f - y] of a model are reduced to a factor with blockFactor,
// RangeReducer and finishTree, and told back.
//
// A standalone program: prints one line per failed check and, last,
// "N passed, M failed"; exits non-zero when a check failed. Built and run by
// test/native.test.ts with sanitizers.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "check.hpp"
#include "layout.hpp"
#include "lm.hpp"
#include "tsqr.hpp"

using namespace nlfit;
using namespace nlfit_test;

namespace {

// Log relative error as the NIST StRD scores it, capped at 11 digits.
double lre(double estimate, double certified) {
  const double rel = std::fabs(estimate - certified) / std::fabs(certified);
  if (rel == 0.0) return 11.0;
  if (std::isnan(rel)) return 0.0;
  return std::min(11.0, -std::log10(rel));
}

// A kBlockSize x q column-major block aligned as blockFactor requires.
class Block {
 public:
  explicit Block(int q) : q_(q) {
    const size_t bytes = sizeof(double) * kBlockSize * static_cast<size_t>(q);
    data_ = static_cast<double*>(std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign));
  }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  ~Block() { std::free(data_); }

  void clear() { std::memset(data_, 0, sizeof(double) * kBlockSize * static_cast<size_t>(q_)); }
  double& at(int row, int col) { return data_[static_cast<size_t>(col) * kBlockSize + row]; }
  double* data() { return data_; }

 private:
  int q_;
  double* data_;
};

// Reduces rows [J_i | r_i], i < m, to the factor the engine would compute.
std::vector<double> reduceRows(int64_t m, int p, const std::function<void(int64_t i, double* row)>& rowAt) {
  const int q = p + 1;
  const int64_t nBlocks = blockCount(m);
  Block block(q);
  RangeReducer reducer(q);
  std::vector<double> row(q), blockR(static_cast<size_t>(q) * q);
  for (int64_t b = 0; b < nBlocks; ++b) {
    block.clear();
    const int64_t first = b * kBlockSize;
    const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, m - first));
    for (int i = 0; i < rows; ++i) {
      rowAt(first + i, row.data());
      for (int j = 0; j < q; ++j) block.at(i, j) = row[j];
    }
    blockFactor(block.data(), q, blockR.data());
    reducer.push(b, blockR.data());
  }
  const std::vector<double> roots = reducer.packedRoots();
  std::vector<double> r(static_cast<size_t>(q) * q);
  finishTree({{roots.data(), static_cast<int64_t>(roots.size())}}, nBlocks, q, r.data());
  return r;
}

struct Model {
  int p;
  std::function<double(const double* theta, double x)> value;
  std::function<void(const double* theta, double x, double* gradient)> gradient;
};

struct Data {
  std::vector<double> x, y;
};

// The factor of [J | f - y] of the model over the data at theta.
std::vector<double> factorAt(const Model& model, const Data& data, const double* theta) {
  const int p = model.p;
  return reduceRows(static_cast<int64_t>(data.x.size()), p, [&](int64_t i, double* row) {
    const double x = data.x[static_cast<size_t>(i)];
    model.gradient(theta, x, row);
    row[p] = model.value(theta, x) - data.y[static_cast<size_t>(i)];
  });
}

struct Fit {
  LMStatus status = LMStatus::Running;
  std::vector<double> x;
  std::vector<double> factor;
  double rss = 0.0;
  int64_t nfev = 0, njev = 0, iterations = 0;
  int64_t nonFiniteTrials = 0;  // non-finite factors told after the start
  bool stopped = false;         // false if the machine kept asking past the loop guard
  std::vector<uint8_t> activeMask;
};

bool allFinite(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [](double a) { return std::isfinite(a); });
}

Fit runFit(const Model& model, const Data& data, const std::vector<double>& start, const LMOptions& options = {},
           const std::function<void(const LevenbergMarquardt&, const std::vector<double>&)>& beforeTell = {}) {
  LevenbergMarquardt lm(model.p, start.data(), options);
  Fit fit;
  bool first = true;
  for (int loop = 0; loop < 100000 && lm.running(); ++loop) {
    const std::vector<double> r = factorAt(model, data, lm.ask());
    if (!first && !allFinite(r)) ++fit.nonFiniteTrials;
    first = false;
    if (beforeTell) beforeTell(lm, r);
    lm.tell(r.data());
  }
  fit.stopped = !lm.running();
  fit.status = lm.status();
  fit.x = lm.x();
  fit.factor = lm.factor();
  fit.rss = lm.fnorm() * lm.fnorm();
  fit.nfev = lm.nfev();
  fit.njev = lm.njev();
  fit.iterations = lm.iterations();
  fit.activeMask = lm.activeMask();
  return fit;
}

// Standard errors as scipy reports them: sqrt(diag((J^T J)^-1) rss / (n - p)).
std::vector<double> standardErrors(const Fit& fit, int p, int64_t n, int* rank) {
  std::vector<double> cov(static_cast<size_t>(p) * p);
  *rank = covarianceFromFactor(fit.factor.data(), p, cov.data());
  std::vector<double> se(p);
  for (int j = 0; j < p; ++j) se[j] = std::sqrt(cov[j * p + j] * fit.rss / static_cast<double>(n - p));
  return se;
}

struct NistProblem {
  const char* name;
  Model model;
  Data data;
  std::vector<std::vector<double>> starts;
  std::vector<double> certified, certifiedStdErrors;
  double certifiedRss;
};

void checkNistFit(const NistProblem& problem, const LMOptions& options, const char* settings, double minParamLre,
                  double minStdErrorLre) {
  const int p = problem.model.p;
  const int64_t n = static_cast<int64_t>(problem.data.x.size());
  for (size_t s = 0; s < problem.starts.size(); ++s) {
    const std::string name = format("%s start %zu (%s)", problem.name, s + 1, settings);
    const Fit fit = runFit(problem.model, problem.data, problem.starts[s], options);
    check(fit.stopped && lmSucceeded(fit.status), name + ": succeeds (status " + lmStatusName(fit.status) + ")");
    double worst = 11.0;
    for (int j = 0; j < p; ++j) worst = std::min(worst, lre(fit.x[j], problem.certified[j]));
    check(worst >= minParamLre, name + format(": parameters to LRE >= %.0f (smallest %.2f)", minParamLre, worst));
    const double rssLre = lre(fit.rss, problem.certifiedRss);
    check(rssLre >= minParamLre, name + format(": residual sum of squares to LRE >= %.0f (%.2f)", minParamLre, rssLre));
    int rank = 0;
    const std::vector<double> se = standardErrors(fit, p, n, &rank);
    check(rank == p, name + format(": full-rank covariance (rank %d)", rank));
    double worstSe = 11.0;
    for (int j = 0; j < p; ++j) worstSe = std::min(worstSe, lre(se[j], problem.certifiedStdErrors[j]));
    check(worstSe >= minStdErrorLre,
          name + format(": standard errors to LRE >= %.0f (smallest %.2f)", minStdErrorLre, worstSe));
  }
}

NistProblem misra1a() {
  return {"Misra1a",
          {2, [](const double* b, double x) { return b[0] * (1.0 - std::exp(-b[1] * x)); },
           [](const double* b, double x, double* g) {
             const double e = std::exp(-b[1] * x);
             g[0] = 1.0 - e;
             g[1] = b[0] * x * e;
           }},
          {{77.6, 114.9, 141.1, 190.8, 239.9, 289.0, 332.8, 378.4, 434.8, 477.3, 536.8, 593.1, 689.1, 760.0},
           {10.07, 14.73, 17.94, 23.93, 29.61, 35.18, 40.02, 44.82, 50.76, 55.05, 61.01, 66.4, 75.47, 81.78}},
          {{500.0, 1e-4}, {250.0, 5e-4}},
          {2.3894212918E+02, 5.5015643181E-04},
          {2.7070075241E+00, 7.2668688436E-06},
          1.2455138894E-01};
}

// NIST "higher difficulty": b1 / (1 + exp(b2 - b3 x))^(1/b4).
NistProblem rat43() {
  return {"Rat43",
          {4,
           [](const double* b, double x) { return b[0] / std::pow(1.0 + std::exp(b[1] - b[2] * x), 1.0 / b[3]); },
           [](const double* b, double x, double* g) {
             const double e = std::exp(b[1] - b[2] * x);
             const double u = 1.0 + e;
             const double h = std::pow(u, -1.0 / b[3]);
             g[0] = h;
             g[1] = -b[0] / b[3] * h / u * e;
             g[2] = b[0] / b[3] * h / u * e * x;
             g[3] = b[0] * h * std::log(u) / (b[3] * b[3]);
           }},
          {{1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0},
           {16.08, 33.83, 65.80, 97.20, 191.55, 326.20, 386.87, 520.53, 590.03, 651.92, 724.93, 699.56, 689.96, 637.56,
            717.41}},
          {{100.0, 10.0, 1.0, 1.0}, {700.0, 5.0, 0.75, 1.3}},
          {6.9964151270E+02, 5.2771253025E+00, 7.5962938329E-01, 1.2792483859E+00},
          {1.6302297817E+01, 2.0828735829E+00, 1.9566123451E-01, 6.8761936385E-01},
          8.7864049080E+03};
}

void testNist() {
  LMOptions defaults;
  LMOptions tight;
  tight.ftol = 1e-14;
  tight.xtol = 1e-14;
  checkNistFit(misra1a(), defaults, "default tolerances", 7.0, 5.0);
  // Rat43's sum of squares is flat enough that the default tolerances stop
  // at 5-6 digits (as MINPACK does); the bar for "solved" is 4.
  checkNistFit(rat43(), defaults, "default tolerances", 4.0, 4.0);
  checkNistFit(rat43(), tight, "ftol = xtol = 1e-14", 7.0, 5.0);
}

Model lineModel() {
  return {2, [](const double* b, double x) { return b[0] + b[1] * x; },
          [](const double*, double x, double* g) {
            g[0] = 1.0;
            g[1] = x;
          }};
}

void testLinearModel() {
  // 1500 points (three blocks, the last one short) around y = 2 - 3x.
  Rng rng(11);
  Data data;
  for (int i = 0; i < 1500; ++i) {
    const double x = -1.0 + 3.0 * i / 1499.0;
    data.x.push_back(x);
    data.y.push_back(2.0 - 3.0 * x + 0.25 * rng.symmetric());
  }
  // The exact least-squares line from centred sums in long double.
  long double mx = 0.0L, my = 0.0L;
  for (size_t i = 0; i < data.x.size(); ++i) {
    mx += data.x[i];
    my += data.y[i];
  }
  mx /= data.x.size();
  my /= data.x.size();
  long double sxy = 0.0L, sxx = 0.0L;
  for (size_t i = 0; i < data.x.size(); ++i) {
    sxy += (data.x[i] - mx) * (data.y[i] - my);
    sxx += (data.x[i] - mx) * (data.x[i] - mx);
  }
  const double slope = static_cast<double>(sxy / sxx);
  const double intercept = static_cast<double>(my - sxy / sxx * mx);

  struct Start {
    std::vector<double> x0;
    int64_t maxNfev;
  };
  // From a start whose scaled norm is large the first Gauss-Newton step lies
  // inside the trust region: one step to the solution, one to confirm. From
  // the origin the initial bound (factor = 100) is smaller than the step.
  const Start starts[] = {{{1.0, 1.0}, 3}, {{-5.0, 7.0}, 3}, {{0.0, 0.0}, 5}};
  for (const Start& s : starts) {
    const std::string name = format("line y = a + b x from (%g, %g)", s.x0[0], s.x0[1]);
    const Fit fit = runFit(lineModel(), data, s.x0);
    check(fit.stopped && lmSucceeded(fit.status), name + ": succeeds (status " + lmStatusName(fit.status) + ")");
    check(fit.nfev <= s.maxNfev, name + format(": at most %lld evaluations (took %lld)",
                                               static_cast<long long>(s.maxNfev), static_cast<long long>(fit.nfev)));
    const double errA = std::fabs(fit.x[0] - intercept) / std::fabs(intercept);
    const double errB = std::fabs(fit.x[1] - slope) / std::fabs(slope);
    check(errA <= 1e-13 && errB <= 1e-13,
          name + format(": the exact least-squares line (relative errors %.3g, %.3g)", errA, errB));
  }
}

void testMaxFev() {
  const NistProblem problem = misra1a();
  for (int64_t maxFev : {1, 2, 3}) {
    LMOptions options;
    options.maxFev = maxFev;
    const Fit fit = runFit(problem.model, problem.data, problem.starts[0], options);
    const std::string name = format("Misra1a start 1 with maxFev = %lld", static_cast<long long>(maxFev));
    check(fit.status == LMStatus::MaxFev, name + ": status max_fev (got " + lmStatusName(fit.status) + ")");
    check(fit.nfev == maxFev, name + format(": nfev == maxFev (got %lld)", static_cast<long long>(fit.nfev)));
    check(!lmSucceeded(fit.status), name + ": not a success");
    const std::vector<double> startFactor = factorAt(problem.model, problem.data, problem.starts[0].data());
    const double startRss = std::pow(stableNorm(startFactor.data() + 2, 3, 3), 2);
    check(fit.rss <= startRss, name + ": x() is no worse than the start");
  }
  {
    LevenbergMarquardt lm(2, misra1a().starts[0].data(), LMOptions{});
    check(lm.options().maxFev == 300, format("maxFev = 0 means 100 (p + 1) = 300 (got %lld)",
                                             static_cast<long long>(lm.options().maxFev)));
    LMOptions options;
    options.maxFev = 3;
    const std::string message = lmStatusMessage(LMStatus::MaxFev, options);
    check(message.find("maxFev = 3") != std::string::npos, "the max_fev message names the limit: " + message);
  }
}

void testNonFiniteStart() {
  const NistProblem problem = misra1a();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    const char* name;
    Model model;
  };
  Model nanValue = problem.model;
  nanValue.value = [nan](const double*, double x) { return x > 400.0 ? nan : 1.0; };
  Model infDerivative = problem.model;
  infDerivative.gradient = [](const double*, double x, double* g) {
    g[0] = 1.0;
    g[1] = x < 100.0 ? -std::numeric_limits<double>::infinity() : x;
  };
  const Case cases[] = {{"a NaN model value", nanValue}, {"an infinite derivative", infDerivative}};
  for (const Case& c : cases) {
    const std::string name = std::string("Misra1a with ") + c.name + " at the start";
    const Fit fit = runFit(c.model, problem.data, problem.starts[0]);
    check(fit.status == LMStatus::NonFiniteStart, name + ": status nonfinite_start (got " + lmStatusName(fit.status) + ")");
    check(fit.nfev == 1, name + format(": one evaluation (got %lld)", static_cast<long long>(fit.nfev)));
    check(!lmSucceeded(fit.status), name + ": not a success");
    check(fit.x == problem.starts[0], name + ": x() is the start");
  }
}

// a sqrt(x - c) is NaN (and its derivative infinite) once c reaches the
// smallest x, 1. The data put the optimum at c near 0.9, close to that edge,
// and from the start (1, 0.5) the steps overshoot into the invalid region
// several times on the way.
void testNonFiniteTrial() {
  const Model model = {2,
                       [](const double* b, double x) { return b[0] * std::sqrt(x - b[1]); },
                       [](const double* b, double x, double* g) {
                         const double s = std::sqrt(x - b[1]);
                         g[0] = s;
                         g[1] = -0.5 * b[0] / s;
                       }};
  Data data;
  for (int i = 0; i < 40; ++i) {
    const double x = 1.0 + 0.25 * i;
    data.x.push_back(x);
    data.y.push_back(3.0 * std::sqrt(x - 0.9) + 0.01 * std::sin(7.0 * i));
  }
  LMOptions tight;
  tight.ftol = 1e-14;
  tight.xtol = 1e-14;
  // The reference fit starts next to the optimum and never leaves the valid region.
  const Fit reference = runFit(model, data, {3.0, 0.85}, tight);
  check(reference.stopped && lmSucceeded(reference.status) && reference.nonFiniteTrials == 0,
        "sqrt model from (3, 0.85): converges without non-finite trials");

  const std::vector<double> start = {1.0, 0.5};
  bool shrankAfterEachNonFinite = true;
  bool keptXAtNonFinite = true;
  double lastNonFiniteStep = -1.0;  // distance of the last non-finite trial from x(), or -1
  std::vector<double> xBefore;
  const Fit fit = runFit(model, data, start, tight, [&](const LevenbergMarquardt& lm, const std::vector<double>& r) {
    const double step = std::hypot(lm.ask()[0] - lm.x()[0], lm.ask()[1] - lm.x()[1]);
    if (lastNonFiniteStep >= 0.0) {
      if (lm.x() != xBefore) keptXAtNonFinite = false;
      if (!(step < lastNonFiniteStep)) shrankAfterEachNonFinite = false;
    }
    const bool trial = lm.nfev() > 0;
    lastNonFiniteStep = trial && !allFinite(r) ? step : -1.0;
    xBefore = lm.x();
  });
  const std::string name = "sqrt model from (1, 0.5), near where it is NaN";
  check(fit.nonFiniteTrials >= 1, name + format(": reaches non-finite trial points (%lld of %lld evaluations)",
                                                static_cast<long long>(fit.nonFiniteTrials),
                                                static_cast<long long>(fit.nfev)));
  check(keptXAtNonFinite, name + ": a non-finite trial point is rejected");
  check(shrankAfterEachNonFinite, name + ": the step after a non-finite trial point is shorter");
  check(fit.stopped && lmSucceeded(fit.status), name + ": succeeds (status " + lmStatusName(fit.status) + ")");
  const double err = std::max(std::fabs(fit.x[0] - reference.x[0]) / std::fabs(reference.x[0]),
                              std::fabs(fit.x[1] - reference.x[1]) / std::fabs(reference.x[1]));
  check(err <= 1e-7, name + format(": reaches the same optimum as from a safe start (relative difference %.3g)", err));
  check(allFinite(fit.factor), name + ": the factor at x() is finite");
}

// ---------------------------------------------------------------------------
// covarianceFromFactor and pivotedFactor.

using Matrix = std::vector<double>;  // row major

// The factor of explicit rows [J | r] (m x (p+1), row major).
Matrix factorOfRows(const Matrix& rows, int64_t m, int p) {
  const int q = p + 1;
  return reduceRows(m, p, [&](int64_t i, double* row) {
    std::copy(rows.begin() + i * q, rows.begin() + (i + 1) * q, row);
  });
}

// inv(J^T J) by Gauss-Jordan elimination with partial pivoting on J^T J
// accumulated in long double: independent of the QR route.
std::vector<long double> normalEquationsInverse(const Matrix& rows, int64_t m, int p) {
  const int q = p + 1;
  std::vector<long double> a(static_cast<size_t>(p) * 2 * p, 0.0L);
  auto A = [&](int i, int j) -> long double& { return a[static_cast<size_t>(i) * 2 * p + j]; };
  for (int i = 0; i < p; ++i) {
    for (int j = 0; j < p; ++j) {
      long double sum = 0.0L;
      for (int64_t k = 0; k < m; ++k) sum += static_cast<long double>(rows[k * q + i]) * rows[k * q + j];
      A(i, j) = sum;
    }
    A(i, p + i) = 1.0L;
  }
  for (int c = 0; c < p; ++c) {
    int pivot = c;
    for (int i = c + 1; i < p; ++i)
      if (std::fabs(A(i, c)) > std::fabs(A(pivot, c))) pivot = i;
    for (int j = 0; j < 2 * p; ++j) std::swap(A(c, j), A(pivot, j));
    const long double d = A(c, c);
    for (int j = 0; j < 2 * p; ++j) A(c, j) /= d;
    for (int i = 0; i < p; ++i) {
      if (i == c) continue;
      const long double f = A(i, c);
      for (int j = 0; j < 2 * p; ++j) A(i, j) -= f * A(c, j);
    }
  }
  std::vector<long double> inv(static_cast<size_t>(p) * p);
  for (int i = 0; i < p; ++i)
    for (int j = 0; j < p; ++j) inv[i * p + j] = A(i, p + j);
  return inv;
}

Matrix randomRows(Rng& rng, int64_t m, int p, const std::vector<double>& columnScale) {
  const int q = p + 1;
  Matrix rows(static_cast<size_t>(m) * q);
  for (int64_t i = 0; i < m; ++i) {
    for (int j = 0; j < p; ++j) rows[i * q + j] = columnScale[j] * rng.symmetric();
    rows[i * q + p] = rng.symmetric();
  }
  return rows;
}

void testCovariance() {
  Rng rng(12);
  const double inf = std::numeric_limits<double>::infinity();
  {
    struct Case {
      const char* name;
      std::vector<double> scale;
    };
    const Case cases[] = {{"p=1", {2.0}},
                          {"p=3 unit columns", {1.0, 1.0, 1.0}},
                          {"p=4 columns scaled 1, 1e3, 1e-2, 10 (pivoting)", {1.0, 1e3, 1e-2, 10.0}},
                          {"p=6 columns scaled 1e-3 .. 1e2", {1e-3, 1e2, 1.0, 1e-1, 10.0, 1e-2}}};
    for (const Case& c : cases) {
      const int p = static_cast<int>(c.scale.size());
      const int64_t m = 700;
      const Matrix rows = randomRows(rng, m, p, c.scale);
      const Matrix r = factorOfRows(rows, m, p);
      std::vector<double> cov(static_cast<size_t>(p) * p);
      const int rank = covarianceFromFactor(r.data(), p, cov.data());
      const std::vector<long double> expected = normalEquationsInverse(rows, m, p);
      double worst = 0.0;
      bool symmetric = true;
      for (int i = 0; i < p; ++i)
        for (int j = 0; j < p; ++j) {
          const long double unit = std::sqrt(expected[i * p + i] * expected[j * p + j]);
          worst = std::max(worst, static_cast<double>(std::fabs(cov[i * p + j] - expected[i * p + j]) / unit));
          symmetric = symmetric && cov[i * p + j] == cov[j * p + i];
        }
      const std::string name = std::string("covarianceFromFactor, ") + c.name;
      check(rank == p, name + format(": full rank (got %d)", rank));
      check(worst <= 1e-12, name + format(": equals inv(J^T J) (relative error %.3g)", worst));
      check(symmetric, name + ": exactly symmetric");
    }
  }
  {
    struct Case {
      const char* name;
      int p;
      std::function<void(int64_t i, double x, double* row)> row;
    };
    const Case cases[] = {
        {"two identical columns [1, x, x]", 3,
         [](int64_t, double x, double* row) {
           row[0] = 1.0;
           row[1] = x;
           row[2] = x;
         }},
        {"two identical columns [exp(-x), exp(-x)]", 2,
         [](int64_t, double x, double* row) {
           row[0] = std::exp(-x);
           row[1] = std::exp(-x);
         }},
        {"a column twice another [x, 1, 2x]", 3,
         [](int64_t, double x, double* row) {
           row[0] = x;
           row[1] = 1.0;
           row[2] = 2.0 * x;
         }},
        {"a zero column [1, 0, x]", 3,
         [](int64_t, double x, double* row) {
           row[0] = 1.0;
           row[1] = 0.0;
           row[2] = x;
         }},
        {"an all-zero J", 2,
         [](int64_t, double, double* row) {
           row[0] = 0.0;
           row[1] = 0.0;
         }},
        {"a combination [1, x, 1 + x]", 3,
         [](int64_t, double x, double* row) {
           row[0] = 1.0;
           row[1] = x;
           row[2] = 1.0 + x;
         }},
    };
    for (const Case& c : cases) {
      const int64_t m = 1000;
      const Matrix r = reduceRows(m, c.p, [&](int64_t i, double* row) {
        const double x = 0.01 * static_cast<double>(i);
        c.row(i, x, row);
        row[c.p] = std::sin(x);
      });
      std::vector<double> cov(static_cast<size_t>(c.p) * c.p, 0.0);
      const int rank = covarianceFromFactor(r.data(), c.p, cov.data());
      const std::string name = std::string("covarianceFromFactor, ") + c.name;
      check(rank < c.p, name + format(": rank below p (got %d of %d)", rank, c.p));
      check(std::all_of(cov.begin(), cov.end(), [inf](double v) { return v == inf; }),
            name + ": every entry is +Infinity");
    }
  }
}

void testPivotedFactor() {
  Rng rng(13);
  const int p = 5;
  const int q = p + 1;
  const std::vector<double> scale = {1e-2, 1.0, 1e3, 10.0, 1e-1};
  const int64_t m = 300;
  const Matrix rows = randomRows(rng, m, p, scale);
  const Matrix factor = factorOfRows(rows, m, p);
  std::vector<double> r, qtf, acnorm;
  std::vector<int> ipvt;
  pivotedFactor(factor.data(), p, r, ipvt, qtf, acnorm);
  auto M = [&](int i, int j) { return r[i + static_cast<size_t>(j) * p]; };

  std::vector<int> sorted(ipvt);
  std::sort(sorted.begin(), sorted.end());
  bool permutation = true;
  for (int j = 0; j < p; ++j) permutation = permutation && sorted[j] == j;
  check(permutation, "pivotedFactor: ipvt is a permutation");
  bool upper = true, decreasing = true;
  for (int j = 0; j < p; ++j) {
    for (int i = j + 1; i < p; ++i) upper = upper && M(i, j) == 0.0;
    if (j > 0) decreasing = decreasing && std::fabs(M(j, j)) <= std::fabs(M(j - 1, j - 1));
  }
  check(upper, "pivotedFactor: r is upper triangular");
  check(decreasing, "pivotedFactor: |diag(r)| does not increase (column pivoting)");
  double worstNorm = 0.0;
  for (int j = 0; j < p; ++j) {
    long double sum = 0.0L;
    for (int64_t i = 0; i < m; ++i) sum += static_cast<long double>(rows[i * q + j]) * rows[i * q + j];
    worstNorm = std::max(worstNorm, static_cast<double>(std::fabs(acnorm[j] - std::sqrt(sum)) / std::sqrt(sum)));
  }
  check(worstNorm <= 1e-14, format("pivotedFactor: acnorm are the column norms of J (relative error %.3g)", worstNorm));
  // r^T r = P^T R_J^T R_J P.
  double worstGram = 0.0;
  for (int a = 0; a < p; ++a)
    for (int b = 0; b < p; ++b) {
      long double fromR = 0.0L, fromFactor = 0.0L;
      for (int k = 0; k < p; ++k) {
        fromR += static_cast<long double>(M(k, a)) * M(k, b);
        fromFactor += static_cast<long double>(factor[k * q + ipvt[a]]) * factor[k * q + ipvt[b]];
      }
      worstGram = std::max(worstGram, static_cast<double>(std::fabs(fromR - fromFactor) / (acnorm[ipvt[a]] * acnorm[ipvt[b]])));
    }
  check(worstGram <= 1e-14, format("pivotedFactor: r^T r = P^T R_J^T R_J P (relative error %.3g)", worstGram));
  // The least-squares solution of R_J z = c (c = factor's last column) from
  // the pivoted triangle and qtf agrees with the unpivoted one.
  std::vector<double> w(p), zPivoted(p), z(p);
  for (int j = p - 1; j >= 0; --j) {
    double sum = qtf[j];
    for (int k = j + 1; k < p; ++k) sum -= M(j, k) * w[k];
    w[j] = sum / M(j, j);
  }
  for (int j = 0; j < p; ++j) zPivoted[ipvt[j]] = w[j];
  for (int j = p - 1; j >= 0; --j) {
    double sum = factor[j * q + p];
    for (int k = j + 1; k < p; ++k) sum -= factor[j * q + k] * z[k];
    z[j] = sum / factor[j * q + j];
  }
  double worstSolution = 0.0;
  for (int j = 0; j < p; ++j) worstSolution = std::max(worstSolution, std::fabs(zPivoted[j] - z[j]) / std::fabs(z[j]));
  check(worstSolution <= 1e-12,
        format("pivotedFactor: qtf gives the same least-squares solution (relative error %.3g)", worstSolution));
}

// Every trial point after a valid start is non-finite (x sits at the edge of
// the model's domain): the step bound collapses until the xtol test would
// fire, and that must not be reported as convergence.
void testNonFiniteEdge() {
  const NistProblem problem = misra1a();
  LevenbergMarquardt lm(2, problem.starts[1].data(), LMOptions{});
  const std::vector<double> start = factorAt(problem.model, problem.data, lm.ask());
  lm.tell(start.data());
  std::vector<double> invalid(start.size(), std::numeric_limits<double>::quiet_NaN());
  int told = 0;
  while (lm.running() && told < 1000) {
    lm.tell(invalid.data());
    ++told;
  }
  check(lm.status() == LMStatus::NonFiniteEdge,
        std::string("all trials non-finite: status nonfinite_edge (got ") + lmStatusName(lm.status()) + ")");
  check(!lmSucceeded(lm.status()), "nonfinite_edge is not a success");
  check(lm.nonFiniteTrials() == told, format("every non-finite trial counted (%lld of %d)",
                                             static_cast<long long>(lm.nonFiniteTrials()), told));
  check(lm.x() == problem.starts[1], "x() stays at the last finite point");
  check(told < 100, format("the step bound collapses quickly (%d trials)", told));
}

void testStatuses() {
  struct Case {
    LMStatus status;
    const char* name;
    bool succeeded;
  };
  const Case cases[] = {
      {LMStatus::Running, "running", false},       {LMStatus::Ftol, "ftol", true},
      {LMStatus::Xtol, "xtol", true},              {LMStatus::FtolXtol, "ftol_xtol", true},
      {LMStatus::Gtol, "gtol", true},              {LMStatus::MaxFev, "max_fev", false},
      {LMStatus::FtolLimit, "ftol_limit", true},   {LMStatus::XtolLimit, "xtol_limit", true},
      {LMStatus::GtolLimit, "gtol_limit", true},   {LMStatus::NonFiniteStart, "nonfinite_start", false},
      {LMStatus::Aborted, "aborted", false},       {LMStatus::NonFiniteEdge, "nonfinite_edge", false},
  };
  for (const Case& c : cases) {
    check(std::string(lmStatusName(c.status)) == c.name,
          format("lmStatusName(%d) is %s (got %s)", static_cast<int>(c.status), c.name, lmStatusName(c.status)));
    check(lmSucceeded(c.status) == c.succeeded,
          format("lmSucceeded(%s) is %s", c.name, c.succeeded ? "true" : "false"));
    check(!lmStatusMessage(c.status, LMOptions{}).empty(), format("lmStatusMessage(%s) is not empty", c.name));
  }
  check(std::string(lmStatusName(static_cast<LMStatus>(99))) == "unknown", "lmStatusName of an unknown value");

  // abort() ends the fit; a factor told afterwards is ignored.
  const NistProblem problem = misra1a();
  LevenbergMarquardt lm(2, problem.starts[0].data(), LMOptions{});
  const std::vector<double> r = factorAt(problem.model, problem.data, lm.ask());
  lm.tell(r.data());
  lm.abort();
  check(!lm.running() && lm.status() == LMStatus::Aborted, "abort() stops the machine with status aborted");
  const std::vector<double> r2 = factorAt(problem.model, problem.data, lm.ask());
  lm.tell(r2.data());
  check(lm.nfev() == 1 && lm.status() == LMStatus::Aborted, "tell() after abort() is ignored");
}


// ---------------------------------------------------------------------------
// Bounds.

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr uint8_t kFree = static_cast<uint8_t>(BoundState::Free);
constexpr uint8_t kAtLower = static_cast<uint8_t>(BoundState::AtLower);
constexpr uint8_t kAtUpper = static_cast<uint8_t>(BoundState::AtUpper);

LMOptions boundedOptions(std::vector<double> lower, std::vector<double> upper, double tol = 0.0) {
  LMOptions options;
  if (tol > 0.0) {
    options.ftol = tol;
    options.xtol = tol;
  }
  options.lower = std::move(lower);
  options.upper = std::move(upper);
  return options;
}

bool sameBits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

double maxRelativeDifference(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0.0;
  for (size_t j = 0; j < a.size(); ++j) {
    worst = std::max(worst, std::fabs(a[j] - b[j]) / std::max(1.0, std::fabs(b[j])));
  }
  return worst;
}

std::string maskText(const std::vector<uint8_t>& mask) {
  std::string text;
  for (uint8_t m : mask) text += static_cast<char>('0' + m);
  return text;
}

// A model linear in its parameters: sum_j theta_j basis_j(x).
Model linearModel(int p, std::function<double(int j, double x)> basis) {
  return {p,
          [p, basis](const double* b, double x) {
            double sum = 0.0;
            for (int j = 0; j < p; ++j) sum += b[j] * basis(j, x);
            return sum;
          },
          [p, basis](const double*, double x, double* g) {
            for (int j = 0; j < p; ++j) g[j] = basis(j, x);
          }};
}

// The box-constrained linear least-squares solution, independently of the
// solver: on every face of the box (each variable free, at its lower or at
// its upper bound) the unconstrained minimiser over the free variables, by
// normal equations in long double; the best feasible one is the optimum (a
// convex quadratic attains its minimum over the box in the relative
// interior of some face, where it is that face's minimiser).
std::vector<double> boxLeastSquares(const Model& model, const Data& data, const std::vector<double>& lower,
                                    const std::vector<double>& upper) {
  const int p = model.p;
  const size_t m = data.x.size();
  std::vector<long double> basis(m * p);
  std::vector<double> row(p), zero(p, 0.0);
  for (size_t i = 0; i < m; ++i) {
    model.gradient(zero.data(), data.x[i], row.data());
    for (int j = 0; j < p; ++j) basis[i * p + j] = row[j];
  }
  int faces = 1;
  for (int j = 0; j < p; ++j) faces *= 3;
  std::vector<double> best;
  long double bestValue = std::numeric_limits<long double>::infinity();
  for (int face = 0; face < faces; ++face) {
    std::vector<long double> x(p, 0.0L);
    std::vector<int> free;
    bool valid = true;
    for (int j = 0, code = face; j < p; ++j, code /= 3) {
      if (code % 3 == 0) free.push_back(j);
      else if (code % 3 == 1) x[j] = lower[j];
      else x[j] = upper[j];
      if (!std::isfinite(static_cast<double>(x[j]))) valid = false;
    }
    if (!valid) continue;
    const int n = static_cast<int>(free.size());
    // [H | b] for the free variables, b = basis_F^T (y - basis_fixed x_fixed).
    std::vector<long double> a(static_cast<size_t>(n) * (n + 1), 0.0L);
    for (size_t i = 0; i < m; ++i) {
      long double rest = data.y[i];
      for (int j = 0; j < p; ++j) rest -= basis[i * p + j] * x[j];
      for (int r = 0; r < n; ++r) {
        for (int c = 0; c < n; ++c) a[r * (n + 1) + c] += basis[i * p + free[r]] * basis[i * p + free[c]];
        a[r * (n + 1) + n] += basis[i * p + free[r]] * rest;
      }
    }
    for (int c = 0; c < n; ++c) {
      int pivot = c;
      for (int r = c + 1; r < n; ++r)
        if (std::fabs(a[r * (n + 1) + c]) > std::fabs(a[pivot * (n + 1) + c])) pivot = r;
      for (int k = 0; k <= n; ++k) std::swap(a[c * (n + 1) + k], a[pivot * (n + 1) + k]);
      for (int r = 0; r < n; ++r) {
        if (r == c) continue;
        const long double f = a[r * (n + 1) + c] / a[c * (n + 1) + c];
        for (int k = 0; k <= n; ++k) a[r * (n + 1) + k] -= f * a[c * (n + 1) + k];
      }
    }
    for (int r = 0; r < n; ++r) x[free[r]] = a[r * (n + 1) + n] / a[r * (n + 1) + r];
    for (int j = 0; j < p; ++j) valid = valid && x[j] >= lower[j] && x[j] <= upper[j];
    if (!valid) continue;
    long double value = 0.0L;
    for (size_t i = 0; i < m; ++i) {
      long double r = -static_cast<long double>(data.y[i]);
      for (int j = 0; j < p; ++j) r += basis[i * p + j] * x[j];
      value += r * r;
    }
    if (value < bestValue) {
      bestValue = value;
      best.assign(x.begin(), x.end());
    }
  }
  return best;
}

// The mask a solution must have: on a bound and not pushed inward by the gradient.
std::vector<uint8_t> expectedMask(const Model& model, const Data& data, const std::vector<double>& x,
                                  const std::vector<double>& lower, const std::vector<double>& upper) {
  const int p = model.p;
  std::vector<long double> g(p, 0.0L);
  std::vector<double> row(p);
  for (size_t i = 0; i < data.x.size(); ++i) {
    model.gradient(x.data(), data.x[i], row.data());
    const long double r = static_cast<long double>(model.value(x.data(), data.x[i])) - data.y[i];
    for (int j = 0; j < p; ++j) g[j] += row[j] * r;
  }
  std::vector<uint8_t> mask(p, kFree);
  for (int j = 0; j < p; ++j) {
    if (x[j] == lower[j] && g[j] >= 0.0L) mask[j] = kAtLower;
    if (x[j] == upper[j] && g[j] <= 0.0L) mask[j] = kAtUpper;
  }
  return mask;
}

// A quadratic y = 1 - 2x + 3x^2 (plus noise) on [-1, 2] fitted with bounds
// that cut off the unconstrained optimum in different ways.
void testBoundedLinear() {
  const Model quadratic = linearModel(3, [](int j, double x) { return std::pow(x, j); });
  Rng rng(21);
  Data data;
  for (int i = 0; i < 700; ++i) {
    const double x = -1.0 + 3.0 * i / 699.0;
    data.x.push_back(x);
    data.y.push_back(1.0 - 2.0 * x + 3.0 * x * x + 0.1 * rng.symmetric());
  }
  struct Case {
    const char* name;
    std::vector<double> lower, upper;
  };
  const Case cases[] = {
      {"c1 >= -1 (the optimum has c1 near -2)", {-kInf, -1.0, -kInf}, {kInf, kInf, kInf}},
      {"c2 <= 2.5", {-kInf, -kInf, -kInf}, {kInf, kInf, 2.5}},
      {"c0 <= 0, c2 <= 2.5", {-kInf, -kInf, -kInf}, {0.0, kInf, 2.5}},
      {"a box around the origin [-0.5, 0.5]^3", {-0.5, -0.5, -0.5}, {0.5, 0.5, 0.5}},
      {"every variable pushed onto a bound", {-kInf, -kInf, 3.5}, {0.5, -2.5, kInf}},
      {"finite bounds that do not bind", {-10.0, -10.0, -10.0}, {10.0, 10.0, 10.0}},
  };
  const std::vector<double> starts[] = {{0.0, 0.0, 0.0}, {0.3, 0.2, 0.1}};
  for (const Case& c : cases) {
    const std::vector<double> expected = boxLeastSquares(quadratic, data, c.lower, c.upper);
    const std::vector<uint8_t> mask = expectedMask(quadratic, data, expected, c.lower, c.upper);
    for (const std::vector<double>& start : starts) {
      const std::string name = format("quadratic, %s, from (%g, %g, %g)", c.name, start[0], start[1], start[2]);
      const Fit fit = runFit(quadratic, data, start, boundedOptions(c.lower, c.upper));
      check(fit.stopped && lmSucceeded(fit.status), name + ": succeeds (status " + lmStatusName(fit.status) + ")");
      const double err = maxRelativeDifference(fit.x, expected);
      check(err <= 1e-10, name + format(": the constrained optimum (%.12g, %.12g, %.12g; difference %.3g)",
                                        expected[0], expected[1], expected[2], err));
      check(fit.activeMask == mask,
            name + ": active mask " + maskText(mask) + " (got " + maskText(fit.activeMask) + ")");
      bool inside = true;
      for (int j = 0; j < 3; ++j) inside = inside && fit.x[j] >= c.lower[j] && fit.x[j] <= c.upper[j];
      check(inside, name + ": x() is feasible");
      if (std::count(mask.begin(), mask.end(), kFree) == 0) {
        check(fit.status == LMStatus::Gtol,
              name + ": a point where every variable is active ends with gtol (got " + lmStatusName(fit.status) + ")");
      }
    }
  }
}

// A variable that has just landed on its bound, whose gradient points into
// the box but whose Levenberg-Marquardt step points out (the columns are
// strongly correlated): it must be held on the bound and the step taken in
// the other variable, not a zero step.
void testBoundedOutwardStep() {
  const Model model = linearModel(2, [](int j, double x) { return j == 0 ? 1.0 : 1.0 + 0.3 * x; });
  Data data;
  for (int i = 0; i < 300; ++i) {
    const double x = -1.0 + 2.0 * i / 299.0;
    data.x.push_back(x);
    data.y.push_back(-0.1 + 2.0 * (1.0 + 0.3 * x) + 0.01 * std::sin(5.0 * x));
  }
  const std::vector<double> lower = {0.0, -kInf}, upper = {kInf, kInf};
  const std::vector<double> expected = boxLeastSquares(model, data, lower, upper);
  int heldOnBound = 0;
  bool alwaysHeld = true;
  const Fit fit = runFit(model, data, {0.0, 1.0}, boundedOptions(lower, upper),
                         [&](const LevenbergMarquardt& lm, const std::vector<double>&) {
                           if (lm.nfev() == 0 || lm.x()[0] != 0.0) return;
                           const std::vector<double>& R = lm.factor();
                           const double g0 = R[0] * R[2];  // (J^T r)_0 = R_00 (Q^T r)_0
                           if (g0 >= 0.0) return;
                           ++heldOnBound;
                           alwaysHeld = alwaysHeld && lm.ask()[0] == 0.0 && lm.ask()[1] != lm.x()[1];
                         });
  const std::string name = "correlated line, b0 >= 0, from (0, 1)";
  check(heldOnBound >= 1, name + ": reaches the bound with the gradient pointing inward");
  check(alwaysHeld, name + ": there the step keeps b0 on its bound and moves b1");
  check(fit.stopped && lmSucceeded(fit.status), name + ": succeeds (status " + lmStatusName(fit.status) + ")");
  const double err = maxRelativeDifference(fit.x, expected);
  check(err <= 1e-10, name + format(": the constrained optimum (difference %.3g)", err));
  check(fit.activeMask == std::vector<uint8_t>({kAtLower, kFree}),
        name + ": active mask 10 (got " + maskText(fit.activeMask) + ")");
}

// Rosenbrock's valley, r = (10 (x1 - x0^2), 1 - x0): optimum (1, 1). With
// x0 <= 0.5 the constrained optimum is (0.5, 0.25) (x1 = x0^2 zeroes the
// first residual, and 1 - x0 is smallest at the bound).
Model rosenbrock() {
  return {2, [](const double* b, double x) { return x == 0.0 ? 10.0 * (b[1] - b[0] * b[0]) : -b[0]; },
          [](const double* b, double x, double* g) {
            g[0] = x == 0.0 ? -20.0 * b[0] : -1.0;
            g[1] = x == 0.0 ? 10.0 : 0.0;
          }};
}

void testBoundedRosenbrock() {
  const Model model = rosenbrock();
  const Data data = {{0.0, 1.0}, {0.0, -1.0}};
  const std::vector<double> start = {-1.2, 1.0};
  {
    const std::string name = "Rosenbrock from (-1.2, 1) with x0 <= 0.5";
    const Fit fit = runFit(model, data, start, boundedOptions({-kInf, -kInf}, {0.5, kInf}));
    check(fit.stopped && lmSucceeded(fit.status), name + ": succeeds (status " + lmStatusName(fit.status) + ")");
    check(fit.x[0] == 0.5, name + format(": x0 lands exactly on its bound (%.17g)", fit.x[0]));
    check(std::fabs(fit.x[1] - 0.25) <= 1e-10, name + format(": x1 = 0.25 (got %.17g)", fit.x[1]));
    check(fit.activeMask == std::vector<uint8_t>({kAtUpper, kFree}),
          name + ": active mask 20 (got " + maskText(fit.activeMask) + ")");
  }
  const Fit unbounded = runFit(model, data, start);
  check(unbounded.stopped && lmSucceeded(unbounded.status), "Rosenbrock from (-1.2, 1): succeeds");
  {
    const std::string name = "Rosenbrock with infinite bounds";
    const Fit fit = runFit(model, data, start, boundedOptions({-kInf, -kInf}, {kInf, kInf}));
    check(sameBits(fit.x, unbounded.x) && sameBits(fit.factor, unbounded.factor) && fit.nfev == unbounded.nfev &&
              fit.status == unbounded.status,
          name + ": bit-identical to the unbounded fit");
    check(fit.activeMask == std::vector<uint8_t>({kFree, kFree}), name + ": nothing active");
  }
  {
    // Bounds the iterates never reach (the path from (-1.2, 1) stays in this box).
    const std::string name = "Rosenbrock with bounds [-3, 3] x [-3, 3]";
    const Fit fit = runFit(model, data, start, boundedOptions({-3.0, -3.0}, {3.0, 3.0}));
    check(fit.stopped && fit.status == unbounded.status, name + ": same status as unbounded");
    const double err = maxRelativeDifference(fit.x, unbounded.x);
    check(err <= 1e-10, name + format(": the unbounded optimum (difference %.3g)", err));
    check(fit.activeMask == std::vector<uint8_t>({kFree, kFree}), name + ": nothing active");
  }
}

Model exponentialDecay() {
  return {3, [](const double* b, double x) { return b[0] * std::exp(-b[1] * x) + b[2]; },
          [](const double* b, double x, double* g) {
            const double e = std::exp(-b[1] * x);
            g[0] = e;
            g[1] = -b[0] * x * e;
            g[2] = 1.0;
          }};
}

Data decayData() {
  Data data;
  for (int i = 0; i < 1200; ++i) {
    const double x = 4.0 * i / 1199.0;
    data.x.push_back(x);
    data.y.push_back(3.0 * std::exp(-1.3 * x) + 0.5 + 0.02 * std::sin(37.0 * x));
  }
  return data;
}

bool convergedByTolerance(LMStatus status) {
  return status == LMStatus::Ftol || status == LMStatus::Xtol || status == LMStatus::FtolXtol ||
         status == LMStatus::Gtol;
}

// a exp(-b x) + c with b >= 2 where the data have b = 1.3: the fit must stop
// on b = 2 exactly, with a and c the least-squares values for b = 2.
void testBoundedExponential() {
  const Model model = exponentialDecay();
  const Data data = decayData();
  const Model atTwo = linearModel(2, [](int j, double x) { return j == 0 ? std::exp(-2.0 * x) : 1.0; });
  const std::vector<double> expectedAC = boxLeastSquares(atTwo, data, {-kInf, -kInf}, {kInf, kInf});
  const std::vector<double> starts[] = {{1.0, 3.0, 0.0}, {5.0, 2.5, 1.0}, {2.0, 0.5, 0.0}};
  for (const std::vector<double>& start : starts) {
    const std::string name = format("a exp(-b x) + c with b >= 2 from (%g, %g, %g)", start[0], start[1], start[2]);
    const Fit fit = runFit(model, data, start, boundedOptions({-kInf, 2.0, -kInf}, {kInf, kInf, kInf}));
    check(fit.stopped && convergedByTolerance(fit.status),
          name + ": converges by ftol, xtol or gtol (status " + lmStatusName(fit.status) + ")");
    check(fit.x[1] == 2.0, name + format(": b = 2 exactly (got %.17g)", fit.x[1]));
    const double err = std::max(std::fabs(fit.x[0] - expectedAC[0]) / std::fabs(expectedAC[0]),
                                std::fabs(fit.x[2] - expectedAC[1]) / std::fabs(expectedAC[1]));
    check(err <= 1e-10, name + format(": a, c are the least-squares values at b = 2 (difference %.3g)", err));
    check(fit.activeMask == std::vector<uint8_t>({kFree, kAtLower, kFree}),
          name + ": active mask 010 (got " + maskText(fit.activeMask) + ")");
  }

  // The optimum strictly inside: identical to the unbounded fit, bit for bit
  // with infinite bounds, to 1e-10 with finite ones that do not bind.
  const std::vector<double> start = {1.0, 1.0, 0.0};
  LMOptions tight;
  tight.ftol = 1e-13;
  tight.xtol = 1e-13;
  const Fit unbounded = runFit(model, data, start, tight);
  check(unbounded.stopped && lmSucceeded(unbounded.status), "a exp(-b x) + c unbounded: succeeds");
  {
    const Fit fit = runFit(model, data, start, boundedOptions({-kInf, -kInf, -kInf}, {kInf, kInf, kInf}, 1e-13));
    check(sameBits(fit.x, unbounded.x) && sameBits(fit.factor, unbounded.factor) && fit.nfev == unbounded.nfev &&
              fit.iterations == unbounded.iterations && fit.status == unbounded.status,
          "a exp(-b x) + c with infinite bounds: bit-identical to the unbounded fit");
  }
  {
    LMOptions onlyLower = tight;
    onlyLower.lower = {-kInf, -kInf, -kInf};
    const Fit fit = runFit(model, data, start, onlyLower);
    check(sameBits(fit.x, unbounded.x) && fit.nfev == unbounded.nfev,
          "a exp(-b x) + c with lower = -Infinity only: bit-identical to the unbounded fit");
  }
  {
    const std::string name = "a exp(-b x) + c with b in [0.5, 5], a in [0, 10], c in [-1, 1]";
    const Fit fit = runFit(model, data, start, boundedOptions({0.0, 0.5, -1.0}, {10.0, 5.0, 1.0}, 1e-13));
    check(fit.stopped && lmSucceeded(fit.status), name + ": succeeds (status " + lmStatusName(fit.status) + ")");
    const double err = maxRelativeDifference(fit.x, unbounded.x);
    check(err <= 1e-10, name + format(": the unbounded optimum (difference %.3g)", err));
    check(fit.activeMask == std::vector<uint8_t>({kFree, kFree, kFree}), name + ": nothing active");
  }
}

// A start outside (or on) the box is moved inside by scipy's rule, and the
// fit goes on from there.
void testFeasibleStart() {
  {
    const std::vector<double> lower = {2.0, -kInf, 0.0, -1e12, 1.0, -kInf};
    const std::vector<double> upper = {kInf, 10.0, 1.0, 0.0, 1.0 + 1e-12, kInf};
    const double x0[] = {1.0, 20.0, 0.5, -1e12, 0.0, 7.0};
    const std::vector<double> x = feasibleStart(6, x0, lower, upper);
    check(x[0] == 2.0 + 2e-10, format("feasibleStart: below lower = 2 moves to 2 + 2e-10 (got %.17g)", x[0]));
    check(x[1] == 10.0 - 1e-9, format("feasibleStart: above upper = 10 moves to 10 - 1e-9 (got %.17g)", x[1]));
    check(x[2] == 0.5, "feasibleStart: a value inside is unchanged");
    check(x[3] == -1e12 + 1e-10 * 1e12, format("feasibleStart: on lower = -1e12 moves by 1e-10 |l| (got %.17g)", x[3]));
    check(x[4] == 1.0 + 0.5e-12,
          format("feasibleStart: a box narrower than the margin gives its middle (got %.17g)", x[4]));
    check(x[5] == 7.0, "feasibleStart: an unbounded value is unchanged");
  }
  const Model model = exponentialDecay();
  const Data data = decayData();
  const std::vector<double> start = {1.0, 0.5, 2.0};
  LevenbergMarquardt lm(3, start.data(), boundedOptions({-kInf, 1.0, -kInf}, {kInf, kInf, 1.5}));
  check(lm.ask()[0] == 1.0 && lm.ask()[1] == 1.0 + 1e-10 && lm.ask()[2] == 1.5 - 1.5e-10,
        format("an infeasible start (1, 0.5, 2) with b >= 1, c <= 1.5 is asked at (1, 1 + 1e-10, 1.5 - 1.5e-10) "
               "(got %.17g, %.17g, %.17g)",
               lm.ask()[0], lm.ask()[1], lm.ask()[2]));
  check(lm.x() == std::vector<double>(lm.ask(), lm.ask() + 3), "x() is the moved start");
  check(lm.activeMask() == std::vector<uint8_t>(3, kFree), "before any factor nothing is active");
  bool feasible = true;
  while (lm.running()) {
    const double* trial = lm.ask();
    feasible = feasible && trial[1] >= 1.0 && trial[2] <= 1.5;
    const std::vector<double> r = factorAt(model, data, trial);
    lm.tell(r.data());
  }
  check(feasible, "from the infeasible start every trial point is feasible");
  check(lmSucceeded(lm.status()),
        std::string("from the infeasible start: succeeds (status ") + lmStatusName(lm.status()) + ")");
  check(std::fabs(lm.x()[1] - 1.3) < 0.05 && lm.activeMask() == std::vector<uint8_t>(3, kFree),
        format("from the infeasible start: reaches the interior optimum near b = 1.3 (b = %.6g)", lm.x()[1]));
}

void testBoundValidation() {
  const double x0[] = {1.0, 1.0, 1.0};
  struct Case {
    const char* name;
    std::vector<double> lower, upper;
    const char* expected;  // part of the message
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Case cases[] = {
      {"inverted bounds", {0.0, 3.0, 0.0}, {1.0, 1.0, 1.0}, "Expected lower[1] <= upper[1] but received 3 > 1"},
      {"inverted decimal bounds", {0.3, 0.0, 0.0}, {0.1, 1.0, 1.0},
       "Expected lower[0] <= upper[0] but received 0.3 > 0.1"},
      {"equal bounds", {0.0, 0.0, 2.0}, {1.0, 1.0, 2.0}, "parameter 2 cannot move, so fix it"},
      {"a NaN bound", {0.0, nan, 0.0}, {}, "lower[1] but received NaN"},
      {"lower = +Infinity", {kInf, 0.0, 0.0}, {}, "lower[0] < Infinity"},
      {"upper = -Infinity", {}, {1.0, 1.0, -kInf}, "upper[2] > -Infinity"},
      {"too few bounds", {0.0, 0.0}, {}, "Expected 3 values for lower (one per parameter) but received 2"},
  };
  for (const Case& c : cases) {
    std::string message;
    try {
      LevenbergMarquardt lm(3, x0, boundedOptions(c.lower, c.upper));
    } catch (const std::invalid_argument& e) {
      message = e.what();
    }
    check(message.find(c.expected) != std::string::npos,
          std::string("bounds with ") + c.name + " are rejected with a message containing '" + c.expected + "' (got '" +
              message + "')");
  }
}

// The unbounded NIST fits are unchanged by infinite bounds, to the bit.
void testInfiniteBoundsNist() {
  for (const NistProblem& problem : {misra1a(), rat43()}) {
    const int p = problem.model.p;
    for (const std::vector<double>& start : problem.starts) {
      const Fit plain = runFit(problem.model, problem.data, start);
      const Fit bounded = runFit(problem.model, problem.data, start,
                                 boundedOptions(std::vector<double>(p, -kInf), std::vector<double>(p, kInf)));
      check(sameBits(plain.x, bounded.x) && sameBits(plain.factor, bounded.factor) && plain.nfev == bounded.nfev &&
                plain.status == bounded.status,
            std::string(problem.name) + ": infinite bounds give bit-identical fits");
    }
  }
}

// ---------------------------------------------------------------------------
// Checkpoints: serialize() and restore().

// Runs a machine until it has been told `tells` factors (or has stopped).
void advance(LevenbergMarquardt& lm, const Model& model, const Data& data, int64_t tells) {
  while (lm.running() && lm.nfev() < tells) {
    const std::vector<double> r = factorAt(model, data, lm.ask());
    lm.tell(r.data());
  }
}

struct StateCase {
  std::string name;
  Model model;
  Data data;
  std::vector<double> start;
  LMOptions options;
};

std::vector<StateCase> stateCases() {
  LMOptions scaled;
  scaled.diag = {1e-2, 1e3};
  const NistProblem rat = rat43();
  const NistProblem misra = misra1a();
  return {
      {"Rat43 (unbounded)", rat.model, rat.data, rat.starts[0], {}},
      {"Misra1a with fixed scaling", misra.model, misra.data, misra.starts[0], scaled},
      {"a exp(-b x) + c with b >= 2 (steps cut by a bound)", exponentialDecay(), decayData(), {2.0, 0.5, 0.0},
       boundedOptions({-kInf, 2.0, -kInf}, {kInf, kInf, kInf})},
      {"Rosenbrock with x0 <= 0.5", rosenbrock(), {{0.0, 1.0}, {0.0, -1.0}}, {-1.2, 1.0},
       boundedOptions({-kInf, -kInf}, {0.5, kInf})},
  };
}

// For every point of a fit (before the first tell, after each one), a machine
// restored from a snapshot there continues exactly as the original: the
// same asks, bit for bit, and the same end.
void testStateRoundTrip() {
  for (const StateCase& c : stateCases()) {
    const Fit reference = runFit(c.model, c.data, c.start, c.options);
    check(reference.stopped && reference.nfev >= 5,
          c.name + format(": the reference fit runs several passes (%lld)", static_cast<long long>(reference.nfev)));
    bool sameAsks = true, sameEnds = true, sameBlobs = true;
    std::string firstDifference;
    for (int64_t k = 0; k < reference.nfev; ++k) {
      LevenbergMarquardt original(c.model.p, c.start.data(), c.options);
      advance(original, c.model, c.data, k);
      const std::vector<uint8_t> blob = original.serialize();
      LevenbergMarquardt restored = LevenbergMarquardt::restore(blob.data(), blob.size());
      sameBlobs = sameBlobs && restored.serialize() == blob;
      while (original.running() && restored.running()) {
        const std::vector<double> a(original.ask(), original.ask() + c.model.p);
        const std::vector<double> b(restored.ask(), restored.ask() + c.model.p);
        if (!sameBits(a, b)) {
          sameAsks = false;
          if (firstDifference.empty()) firstDifference = format("after tell %lld", static_cast<long long>(k));
          break;
        }
        const std::vector<double> r = factorAt(c.model, c.data, a.data());
        original.tell(r.data());
        restored.tell(r.data());
      }
      const bool same = original.status() == restored.status() && original.status() == reference.status &&
                        sameBits(restored.x(), reference.x) && sameBits(restored.factor(), reference.factor) &&
                        restored.nfev() == reference.nfev && restored.njev() == reference.njev &&
                        restored.iterations() == reference.iterations &&
                        restored.activeMask() == reference.activeMask && restored.fnorm() == original.fnorm();
      if (!same && sameEnds) {
        sameEnds = false;
        if (firstDifference.empty()) firstDifference = format("end differs after tell %lld", static_cast<long long>(k));
      }
    }
    check(sameBlobs, c.name + ": a restored machine serialises to the same bytes");
    check(sameAsks && sameEnds,
          c.name + format(": restored at each of %lld points, it continues bit for bit to the reference end (%s)",
                          static_cast<long long>(reference.nfev), firstDifference.c_str()));
  }
}

// FNV-1a 64, to re-sign blobs edited on purpose (the format's checksum).
uint64_t testFnv1a64(const uint8_t* bytes, size_t size) {
  uint64_t hash = 14695981039346656037ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

void resign(std::vector<uint8_t>& blob) {
  const uint64_t hash = testFnv1a64(blob.data(), blob.size() - 8);
  for (int i = 0; i < 8; ++i) blob[blob.size() - 8 + i] = static_cast<uint8_t>(hash >> (8 * i));
}

// The message restore() throws for a blob, or "" when it accepts it.
std::string restoreError(const std::vector<uint8_t>& blob) {
  try {
    LevenbergMarquardt::restore(blob.data(), blob.size());
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

void checkRejected(const std::vector<uint8_t>& blob, const std::string& expected, const std::string& what) {
  const std::string message = restoreError(blob);
  check(!message.empty() && message.find(expected) != std::string::npos,
        what + ": rejected with a message containing '" + expected + "' (got '" + message + "')");
}

void put32(std::vector<uint8_t>& blob, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) blob[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

void putDouble(std::vector<uint8_t>& blob, size_t at, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  for (int i = 0; i < 8; ++i) blob[at + i] = static_cast<uint8_t>(bits >> (8 * i));
}

void testStateCorruption() {
  const StateCase c = stateCases()[0];
  LevenbergMarquardt lm(c.model.p, c.start.data(), c.options);
  advance(lm, c.model, c.data, 4);
  const std::vector<uint8_t> blob = lm.serialize();
  check(restoreError(blob).empty(), "the intact blob is accepted");

  // Any one changed byte is caught (FNV-1a changes with every single byte).
  int accepted = 0;
  for (size_t i = 0; i < blob.size(); ++i) {
    std::vector<uint8_t> flipped = blob;
    flipped[i] ^= 0x10;
    if (restoreError(flipped).empty()) ++accepted;
  }
  check(accepted == 0, format("every one of %zu single-byte flips is rejected (%d accepted)", blob.size(), accepted));
  int truncatedAccepted = 0;
  for (size_t n = 0; n < blob.size(); ++n) {
    if (restoreError(std::vector<uint8_t>(blob.begin(), blob.begin() + static_cast<std::ptrdiff_t>(n))).empty()) {
      ++truncatedAccepted;
    }
  }
  check(truncatedAccepted == 0, format("every truncation is rejected (%d accepted)", truncatedAccepted));
  checkRejected(std::vector<uint8_t>(blob.begin(), blob.end() - 3), "truncated", "a blob missing its last 3 bytes");
  {
    std::vector<uint8_t> longer = blob;
    longer.push_back(0);
    checkRejected(longer, "1 bytes follow the", "a blob with a byte appended");
  }
  {
    std::vector<uint8_t> flipped = blob;
    flipped[40] ^= 1;
    checkRejected(flipped, "checksum mismatch", "a flipped payload byte");
  }
  {
    std::vector<uint8_t> newer = blob;
    put32(newer, 8, LevenbergMarquardt::kStateVersion + 1);
    resign(newer);
    checkRejected(newer, "format version 2 is not supported (this build reads version 1)", "a newer version");
  }
  {
    const std::string text = "{\"not\": \"a solver state, but long enough to pass the size check\"}";
    checkRejected(std::vector<uint8_t>(text.begin(), text.end()), "wrong magic", "a foreign blob");
  }
  {
    std::vector<uint8_t> zeroP = blob;
    put32(zeroP, 12, 0);
    resign(zeroP);
    checkRejected(zeroP, "p = 0 is outside [1, 64]", "p = 0");
  }
  {
    // Rat43, unbounded, no scaling: x[0] sits after the options (4 doubles,
    // maxFev, three empty vectors), the status, four flags and x's count.
    const size_t x0 = 24 + 5 * 8 + 3 * 4 + 4 + 4 + 4;
    std::vector<uint8_t> nonFinite = blob;
    putDouble(nonFinite, x0, std::numeric_limits<double>::quiet_NaN());
    resign(nonFinite);
    checkRejected(nonFinite, "x[0] is not finite", "a NaN parameter with a valid checksum");
    std::vector<uint8_t> badTol = blob;
    putDouble(badTol, 24, -1.0);
    resign(badTol);
    checkRejected(badTol, "ftol is not a finite number >= 0", "a negative ftol with a valid checksum");
  }
  {
    // The pivot: its last entry sits before the 8 scalars, 4 counters and
    // the two empty bounded vectors at the end of the payload.
    const size_t last = blob.size() - 8 - (8 * 8 + 4 * 8 + 4 + 4) - 4;
    std::vector<uint8_t> badPivot = blob;
    put32(badPivot, last, 7);
    resign(badPivot);
    checkRejected(badPivot, "ipvt is not a permutation", "a pivot index out of range with a valid checksum");
  }
  {
    // A bounded state whose parameter was moved outside its box.
    const StateCase b = stateCases()[2];
    LevenbergMarquardt bounded(b.model.p, b.start.data(), b.options);
    advance(bounded, b.model, b.data, 3);
    std::vector<uint8_t> outside = bounded.serialize();
    // x[1] (b >= 2): after the options (4 doubles, maxFev, lower and upper of
    // 3 values, empty diag), the status, four flags, x's count and x[0].
    const size_t x1 = 24 + 5 * 8 + 2 * (4 + 3 * 8) + 4 + 4 + 4 + 4 + 8;
    putDouble(outside, x1, 1.5);
    resign(outside);
    checkRejected(outside, "lies outside its bounds", "a bounded parameter outside its box");
  }
}

}  // namespace

int main() {
  const std::pair<const char*, void (*)()> tests[] = {
      {"testNist", testNist},
      {"testLinearModel", testLinearModel},
      {"testMaxFev", testMaxFev},
      {"testNonFiniteStart", testNonFiniteStart},
      {"testNonFiniteTrial", testNonFiniteTrial},
      {"testNonFiniteEdge", testNonFiniteEdge},
      {"testCovariance", testCovariance},
      {"testPivotedFactor", testPivotedFactor},
      {"testStatuses", testStatuses},
      {"testBoundedLinear", testBoundedLinear},
      {"testBoundedOutwardStep", testBoundedOutwardStep},
      {"testBoundedRosenbrock", testBoundedRosenbrock},
      {"testBoundedExponential", testBoundedExponential},
      {"testFeasibleStart", testFeasibleStart},
      {"testBoundValidation", testBoundValidation},
      {"testInfiniteBoundsNist", testInfiniteBoundsNist},
      {"testStateRoundTrip", testStateRoundTrip},
      {"testStateCorruption", testStateCorruption},
  };
  return runTests(tests);
}
