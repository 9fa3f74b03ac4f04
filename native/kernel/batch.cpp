// The batch fitter; see batch.hpp for the contract and the estimators.
//
// A call fits its curves one after another with one set of scratch: an
// evaluator per block width used, one block, the tree of a long curve, one
// LevenbergMarquardt machine that is reset for each curve, and the
// covariance workspace. Nothing is allocated per curve, so the cost of a
// small curve is its evaluations (about 0.3 us for 25 points and 5
// parameters: model, derivatives and the block's Householder factor) and its
// steps.
#include "batch.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "bytecode.hpp"
#include "columns.hpp"
#include "layout.hpp"
#include "lm.hpp"
#include "tsqr.hpp"

namespace nlfit {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument("fitCurves: " + message); }

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

bool isIndex(double v) { return v >= 0.0 && v <= 9007199254740992.0 && v == std::floor(v); }

// The narrowest block width that holds a curve of n points and q columns,
// or 0 when the curve needs several kBlockSize blocks.
int widthFor(int64_t n, int q) {
  const int64_t rows = std::max<int64_t>(n, q);
  for (int w : kBlockWidths)
    if (rows <= w) return w;
  return 0;
}

struct AlignedDelete {
  void operator()(double* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }
};
using AlignedDoubles = std::unique_ptr<double[], AlignedDelete>;

AlignedDoubles alignedDoubles(std::size_t n) {
  double* p = static_cast<double*>(::operator new[](n * sizeof(double), std::align_val_t(kAlign)));
  std::fill(p, p + n, 0.0);
  return AlignedDoubles(p);
}

// y ln(y/f) + f - y (batch.hpp, poissonDevianceTerm); inline here for the
// row loop of every Poisson evaluation.
inline double devianceTerm(double y, double f) {
  if (y == 0.0) return f;
  const double d = y - f;
  const double sum = y + f;
  if (std::fabs(d) < 0.1 * sum) {
    // With v = (y - f) / (y + f), ln(y/f) = 2 atanh(v) = 2 (v + v^3/3 + ...),
    // and the term is d v + 2 y (v^3/3 + v^5/5 + ...): no cancellation, the
    // first part is (y - f)^2 / (y + f) >= 0 and, for |v| < 0.1, the series
    // is below a tenth of it. Eight terms: the ninth is below 1e-18 of the
    // first part.
    const double v = d / sum;
    const double v2 = v * v;
    double series = 1.0 / 17;
    for (int k = 15; k >= 3; k -= 2) series = series * v2 + 1.0 / k;
    return d * v + 2.0 * y * (v * v2) * series;
  }
  const double ratio = y / f;
  // y/f can overflow or underflow where y ln y - y ln f cannot.
  const double logRatio = ratio > 0.0 && std::isfinite(ratio) ? std::log(ratio) : std::log(y) - std::log(f);
  return y * logRatio + (f - y);
}

// Checks what the whole call relies on, and scans the offsets of its curves
// (returning the longest curve's length).
int64_t validate(const BatchProblem& b, int64_t curveStart, int64_t curveEnd) {
  if (!b.program) fail("the program is null");
  const int p = b.program->nParams();
  if (p < 1) fail("the model has no parameters");
  if (b.nVars != b.program->nVars()) {
    fail("the model reads " + std::to_string(b.program->nVars()) + " variables but " + std::to_string(b.nVars) +
         " x columns were given");
  }
  for (int v = 0; v < b.nVars; ++v)
    if (b.x == nullptr || b.x[v] == nullptr) fail("x column " + std::to_string(v) + " is null");
  if (b.nCurves < 0 || b.yLength < 0) fail("negative sizes");
  if (b.yLength > 0 && b.y == nullptr) fail("y is null");
  if (curveStart < 0 || curveEnd < curveStart || curveEnd > b.nCurves) {
    fail("curves [" + std::to_string(curveStart) + ", " + std::to_string(curveEnd) + ") are not within [0, " +
         std::to_string(b.nCurves) + ")");
  }
  int64_t longest = 0;
  if (b.offsets != nullptr) {
    for (int64_t c = curveStart; c <= curveEnd; ++c) {
      const double o = b.offsets[c];
      if (!isIndex(o) || o > static_cast<double>(b.yLength)) {
        fail("offsets[" + std::to_string(c) + "] = " + number(o) + " is not an integer in [0, " +
             std::to_string(b.yLength) + "]");
      }
      if (c > curveStart) {
        if (o < b.offsets[c - 1]) {
          fail("offsets[" + std::to_string(c) + "] = " + number(o) + " is below offsets[" + std::to_string(c - 1) +
               "] = " + number(b.offsets[c - 1]));
        }
        longest = std::max(longest, static_cast<int64_t>(o - b.offsets[c - 1]));
      }
    }
  } else {
    if (b.pointsPerCurve < 0) fail("negative points per curve");
    if (b.pointsPerCurve > 0 && b.nCurves > b.yLength / b.pointsPerCurve) {
      fail(std::to_string(b.nCurves) + " curves of " + std::to_string(b.pointsPerCurve) + " points need more than the " +
           std::to_string(b.yLength) + " values of y");
    }
    longest = curveEnd > curveStart ? b.pointsPerCurve : 0;
  }
  if (b.p0 == nullptr) fail("p0 is null");
  if (static_cast<int32_t>(b.loss) < 0 || static_cast<int32_t>(b.loss) >= kLossCount) fail("unknown loss");
  if (!(b.fScale > 0.0) || !std::isfinite(b.fScale)) fail("fScale must be a finite number > 0");
  if (b.estimator != Estimator::LeastSquares && b.estimator != Estimator::Poisson) fail("unknown estimator");
  if (b.estimator == Estimator::Poisson) {
    if (b.sigma != nullptr) fail("the Poisson estimator takes no sigma (the model is the variance)");
    if (b.loss != Loss::Linear) fail("the Poisson estimator takes no robust loss");
  }
  for (const auto& [value, name] : {std::pair<double, const char*>{b.ftol, "ftol"}, {b.xtol, "xtol"}, {b.gtol, "gtol"}}) {
    if (!(value >= 0.0) || !std::isfinite(value)) fail(std::string(name) + " must be a finite number >= 0");
  }
  if (!(b.factor > 0.0) || !std::isfinite(b.factor)) fail("factor must be a finite number > 0");
  if (b.maxFev < 0) fail("maxFev must be >= 0");
  // Bounds of every curve in the range (or the shared ones): an input error,
  // like a bad offset, not a property of one curve's data.
  if (b.lower != nullptr || b.upper != nullptr) {
    const int64_t first = b.boundsPerCurve ? curveStart : 0;
    const int64_t last = b.boundsPerCurve ? curveEnd : std::min<int64_t>(1, curveEnd - curveStart);
    for (int64_t c = first; c < last; ++c) {
      for (int j = 0; j < p; ++j) {
        const int64_t at = (b.boundsPerCurve ? c * p : 0) + j;
        const double l = b.lower ? b.lower[at] : -kInf, u = b.upper ? b.upper[at] : kInf;
        if (!(l < u) || l == kInf || u == -kInf) {
          fail("bounds of parameter " + std::to_string(j) + (b.boundsPerCurve ? " of curve " + std::to_string(c) : "") +
               ": expected lower < upper (and neither NaN) but received lower[" + std::to_string(at) + "] = " + number(l) +
               ", upper[" + std::to_string(at) + "] = " + number(u));
        }
      }
    }
  }
  return longest;
}

// The canonical tree of tsqr.hpp over the blocks of one curve, all held by
// one caller: the stack of RangeReducer (complete subtrees, merged as soon as
// two siblings are there) and then finishTree's right-to-left merge of what
// is left. The same operations on the same operands as RangeReducer and
// finishTree, without their allocations.
class CurveTree {
 public:
  void reserve(int q, int64_t maxBlocks) {
    q_ = q;
    int levels = 1;
    while ((int64_t{1} << (levels - 1)) < maxBlocks) ++levels;
    factors_.assign(static_cast<std::size_t>(levels + 1) * q * q, 0.0);
    level_.assign(static_cast<std::size_t>(levels + 1), 0);
  }
  void clear() { size_ = 0; }
  // Where the next block's factor goes; then push().
  double* next() { return factors_.data() + static_cast<std::size_t>(size_) * q_ * q_; }
  void push() {
    level_[size_++] = 0;
    while (size_ >= 2 && level_[size_ - 1] == level_[size_ - 2]) {
      mergeFactors(at(size_ - 2), at(size_ - 1), q_);
      ++level_[size_ - 2];
      --size_;
    }
  }
  void finish(double* R) {
    for (int i = size_ - 2; i >= 0; --i) mergeFactors(at(i), at(i + 1), q_);
    std::memcpy(R, at(0), sizeof(double) * q_ * q_);
  }

 private:
  double* at(int i) { return factors_.data() + static_cast<std::size_t>(i) * q_ * q_; }
  int q_ = 0, size_ = 0;
  std::vector<double> factors_;
  std::vector<int> level_;
};

// The factor ((k+1) x (k+1), row major) of [J_S | r] for the columns S of J
// marked free, from the factor R of [J | r]: the kept columns of R, made
// triangular again by Givens rotations (as src/solver/statistics.ts does for
// a single fit). dense holds q x (k+1) values.
void freeFactor(const double* R, int p, const std::vector<uint8_t>& active, std::vector<int>& columns,
                std::vector<double>& dense, std::vector<double>& out) {
  const int q = p + 1;
  columns.clear();
  for (int j = 0; j < p; ++j)
    if (active[j] == static_cast<uint8_t>(BoundState::Free)) columns.push_back(j);
  columns.push_back(p);
  const int k = static_cast<int>(columns.size());
  dense.resize(static_cast<std::size_t>(q) * k);
  for (int i = 0; i < q; ++i)
    for (int c = 0; c < k; ++c) dense[i * k + c] = R[i * q + columns[c]];
  for (int c = 0; c < k; ++c) {
    for (int i = q - 1; i > c; --i) {
      const double x = dense[(i - 1) * k + c], y = dense[i * k + c];
      if (y == 0.0) continue;
      const double r = std::hypot(x, y);
      const double cs = x / r, sn = y / r;
      for (int m = c; m < k; ++m) {
        const double u = dense[(i - 1) * k + m], v = dense[i * k + m];
        dense[(i - 1) * k + m] = cs * u + sn * v;
        dense[i * k + m] = -sn * u + cs * v;
      }
      dense[i * k + c] = 0.0;
    }
  }
  out.assign(static_cast<std::size_t>(k) * k, 0.0);
  for (int i = 0; i < k; ++i)
    for (int c = i; c < k; ++c) out[i * k + c] = dense[i * k + c];
}

// What one evaluation of a curve tells the machine besides its factor.
struct Trial {
  double fnorm;  // sqrt(2 cost), or -1: take it from the factor
  double rss;    // weighted sum of squares before a robust loss (NaN when not needed)
};

class CurveFitter {
 public:
  CurveFitter(const BatchProblem& problem, int64_t longest)
      : b_(problem),
        p_(problem.program->nParams()),
        q_(p_ + 1),
        lm_(p_, std::vector<double>(static_cast<std::size_t>(p_), 0.0).data(), lmOptions(problem)),
        vars_(static_cast<std::size_t>(problem.nVars), nullptr),
        R_(static_cast<std::size_t>(q_) * q_),
        cov_(static_cast<std::size_t>(p_) * p_) {
    const int width = widthFor(longest, q_);
    A_ = alignedDoubles(static_cast<std::size_t>(width > 0 ? width : kBlockSize) * q_);
    if (width == 0) tree_.reserve(q_, blockCount(longest));
    cols_.vars = vars_.data();
    cols_.nVars = problem.nVars;
  }

  void fit(int64_t c, const BatchOutput& out) {
    const int64_t first = b_.offsets ? static_cast<int64_t>(b_.offsets[c]) : c * b_.pointsPerCurve;
    const int64_t n = b_.offsets ? static_cast<int64_t>(b_.offsets[c + 1]) - first : b_.pointsPerCurve;
    for (int v = 0; v < b_.nVars; ++v) vars_[v] = b_.xPerCurve ? b_.x[v] + first : b_.x[v];
    cols_.y = b_.y + first;
    cols_.sigma = b_.sigma ? b_.sigma + first : nullptr;
    const double* start = b_.p0 + (b_.p0PerCurve ? c * p_ : 0);
    if (!validCurve(n, start)) return writeUnfitted(c, BatchStatus::InvalidData, out);
    if (n < p_) return writeUnfitted(c, BatchStatus::TooFewPoints, out);
    const int64_t boundsAt = b_.boundsPerCurve ? c * p_ : 0;
    lm_.reset(start, b_.lower ? b_.lower + boundsAt : nullptr, b_.upper ? b_.upper + boundsAt : nullptr);
    const int width = widthFor(n, q_);
    BlockEvaluator& ev = evaluator(width > 0 ? width : kBlockSize);
    double rssAtX = kNaN;
    while (lm_.running()) {
      ev.setParams(lm_.ask());
      const Trial trial = width > 0 ? evaluateBlock(ev, width, n) : evaluateBlocks(ev, n);
      const bool atStart = lm_.nfev() == 0;
      const int64_t accepted = lm_.iterations();
      lm_.tell(R_.data(), trial.fnorm);
      if (atStart || lm_.iterations() != accepted) rssAtX = trial.rss;
    }
    writeFit(c, n, rssAtX, out);
  }

 private:
  static LMOptions lmOptions(const BatchProblem& b) {
    LMOptions o;
    o.ftol = b.ftol;
    o.xtol = b.xtol;
    o.gtol = b.gtol;
    o.factor = b.factor;
    o.maxFev = b.maxFev;
    return o;
  }

  BlockEvaluator& evaluator(int width) {
    int slot = 0;
    while (kBlockWidths[slot] != width) ++slot;
    if (!evaluators_[slot]) {
      evaluators_[slot] = std::make_unique<BlockEvaluator>(b_.program, width, b_.estimator == Estimator::Poisson);
    }
    return *evaluators_[slot];
  }

  bool validCurve(int64_t n, const double* start) const {
    for (int j = 0; j < p_; ++j)
      if (!std::isfinite(start[j])) return false;
    for (int v = 0; v < b_.nVars; ++v)
      if (firstNonFinite(vars_[v], n) >= 0) return false;
    const double* y = cols_.y;
    if (b_.estimator == Estimator::Poisson) {
      for (int64_t i = 0; i < n; ++i)
        if (!(y[i] >= 0.0) || !std::isfinite(y[i])) return false;
    } else if (firstNonFinite(y, n) >= 0) {
      return false;
    }
    if (cols_.sigma != nullptr) {
      for (int64_t i = 0; i < n; ++i)
        if (!validSigma(cols_.sigma[i])) return false;
    }
    return true;
  }

  // Rows [0, rows) of a block evaluated at the trial point, made the rows the
  // estimator reduces; returns the block's share of 2 cost (the deviance for
  // Poisson: NaN when some f <= 0) and of the weighted sum of squares.
  std::pair<double, double> transformRows(const BlockEvaluator& ev, int width, int64_t first, int rows) {
    double* A = A_.get();
    double* residual = A + static_cast<int64_t>(p_) * width;
    if (b_.estimator == Estimator::Poisson) {
      const double* f = ev.modelValues();
      const double* y = cols_.y + first;
      double deviance = 0.0;
      for (int i = 0; i < rows; ++i) {
        if (!(f[i] > 0.0) || !std::isfinite(f[i])) return {kNaN, kNaN};
        const double s = 1.0 / std::sqrt(f[i]);
        for (int j = 0; j < p_; ++j) A[static_cast<int64_t>(j) * width + i] *= s;
        residual[i] *= s;
        deviance += devianceTerm(y[i], f[i]);
      }
      return {2.0 * deviance, kNaN};
    }
    if (b_.loss == Loss::Linear) return {kNaN, kNaN};
    double rss = 0.0;
    for (int i = 0; i < rows; ++i) rss += residual[i] * residual[i];
    return {2.0 * applyLoss(b_.loss, b_.fScale, A, rows, q_, width), rss};
  }

  Trial finishTrial(double twiceCost, double rss) const {
    const bool given = b_.estimator == Estimator::Poisson || b_.loss != Loss::Linear;
    // NaN makes the machine treat the point as invalid (lm.hpp, tell).
    return {given ? std::sqrt(twiceCost) : -1.0, rss};
  }

  Trial evaluateBlock(BlockEvaluator& ev, int width, int64_t n) {
    const int rows = static_cast<int>(n);
    ev.evalBlock(cols_, 0, rows, A_.get());
    const auto [twiceCost, rss] = transformRows(ev, width, 0, rows);
    blockFactor(A_.get(), q_, R_.data(), width);
    return finishTrial(twiceCost, rss);
  }

  // A curve longer than kBlockSize: its blocks in order, reduced in the
  // canonical tree; costs summed in block order.
  Trial evaluateBlocks(BlockEvaluator& ev, int64_t n) {
    tree_.clear();
    double twiceCost = 0.0, rss = 0.0;
    for (int64_t blockStart = 0; blockStart < n; blockStart += kBlockSize) {
      const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - blockStart));
      ev.evalBlock(cols_, blockStart, rows, A_.get());
      const auto [blockCost, blockRss] = transformRows(ev, kBlockSize, blockStart, rows);
      twiceCost += blockCost;
      rss += blockRss;
      blockFactor(A_.get(), q_, tree_.next());
      tree_.push();
    }
    tree_.finish(R_.data());
    return finishTrial(twiceCost, rss);
  }

  void writeUnfitted(int64_t c, BatchStatus status, const BatchOutput& out) {
    std::fill(out.params + c * p_, out.params + (c + 1) * p_, kNaN);
    std::fill(out.stdErrors + c * p_, out.stdErrors + (c + 1) * p_, kNaN);
    out.chi2[c] = kNaN;
    out.iterations[c] = 0.0;
    out.nfev[c] = 0.0;
    out.status[c] = static_cast<uint8_t>(status);
  }

  void writeFit(int64_t c, int64_t n, double rssAtX, const BatchOutput& out) {
    std::copy(lm_.x().begin(), lm_.x().end(), out.params + c * p_);
    out.iterations[c] = static_cast<double>(lm_.iterations());
    out.nfev[c] = static_cast<double>(lm_.nfev());
    out.status[c] = static_cast<uint8_t>(lm_.status());
    double* errors = out.stdErrors + c * p_;
    const std::vector<double>& factor = lm_.factor();
    if (factor.size() != static_cast<std::size_t>(q_) * q_) {  // no finite factor was ever told
      out.chi2[c] = kNaN;
      std::fill(errors, errors + p_, kNaN);
      return;
    }
    const double objective = lm_.fnorm() * lm_.fnorm();  // 2 cost: rss, robust objective or deviance
    const bool robust = b_.estimator == Estimator::LeastSquares && b_.loss != Loss::Linear;
    out.chi2[c] = robust ? rssAtX : objective;
    const int64_t dof = n - p_;
    const double scale = b_.estimator == Estimator::Poisson || b_.absoluteSigma ? 1.0
                         : dof > 0                                             ? objective / static_cast<double>(dof)
                                                                               : kInf;
    lm_.activeMask(active_);
    const int kept = static_cast<int>(std::count(active_.begin(), active_.end(), static_cast<uint8_t>(BoundState::Free)));
    std::fill(errors, errors + p_, kNaN);
    if (kept == 0) return;
    const double* R = factor.data();
    if (kept < p_) {
      freeFactor(R, p_, active_, freeColumns_, dense_, reduced_);
      R = reduced_.data();
    }
    const int rank = covarianceFromFactor(R, kept, cov_.data(), covWork_);
    for (int a = 0, j = 0; j < p_; ++j) {
      if (active_[j] != static_cast<uint8_t>(BoundState::Free)) continue;
      const double variance = rank < kept || !std::isfinite(scale) ? kInf : cov_[a * kept + a] * scale;
      errors[j] = std::sqrt(variance);
      ++a;
    }
  }

  const BatchProblem& b_;
  const int p_, q_;
  LevenbergMarquardt lm_;
  std::unique_ptr<BlockEvaluator> evaluators_[kBlockWidthCount];
  std::vector<const double*> vars_;
  Columns cols_;
  AlignedDoubles A_;
  std::vector<double> R_;
  CurveTree tree_;
  std::vector<double> cov_;
  CovarianceWorkspace covWork_;
  std::vector<uint8_t> active_;
  std::vector<int> freeColumns_;
  std::vector<double> dense_, reduced_;
};

}  // namespace

const char* batchStatusName(int status) {
  if (status == static_cast<int>(BatchStatus::InvalidData)) return "invalid_data";
  if (status == static_cast<int>(BatchStatus::TooFewPoints)) return "too_few_points";
  if (status >= 0 && status <= static_cast<int>(LMStatus::NonFiniteEdge)) return lmStatusName(static_cast<LMStatus>(status));
  return "unknown";
}

double poissonDevianceTerm(double y, double f) { return devianceTerm(y, f); }

int64_t fitCurves(const BatchProblem& problem, int64_t curveStart, int64_t curveEnd, const BatchOutput& out) {
  const int64_t longest = validate(problem, curveStart, curveEnd);
  if (curveEnd == curveStart) return 0;
  if (!out.params || !out.stdErrors || !out.chi2 || !out.iterations || !out.nfev || !out.status) {
    fail("an output array is null");
  }
  CurveFitter fitter(problem, longest);
  for (int64_t c = curveStart; c < curveEnd; ++c) {
    if (problem.cancel != nullptr && problem.cancel->stop()) return c - curveStart;
    fitter.fit(c, out);
  }
  return curveEnd - curveStart;
}

}  // namespace nlfit
