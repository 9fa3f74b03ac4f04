// Tests of the batch fitter (native/kernel/batch.cpp) and of what it rests
// on: narrow blocks (program.hpp, tsqr.hpp) give the same bits as kBlockSize
// blocks, the coefficient tape of a reused evaluator gives the bits of a
// fresh one, LevenbergMarquardt::reset gives the machine of a fresh
// constructor; then the fits themselves: convergence from starts within 20%,
// the same bits for any shard boundaries and as a fit pumped by hand at
// kBlockSize, bad curves that do not touch their neighbours, ragged curves
// (long ones over several blocks), per-curve starts and bounds, robust
// losses, standard errors, and the Poisson estimator against closed forms and
// a long-double check of the optimum.
//
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover
//       -fno-math-errno -fno-trapping-math -fopenmp-simd -march=native
//       -Inative/kernel native/kernel/*.cpp test/native/batch_test.cpp
//       -o /tmp/batch_test -lmvec -lm && /tmp/batch_test
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "batch.hpp"
#include "check.hpp"
#include "lm.hpp"
#include "loss.hpp"
#include "program.hpp"
#include "tsqr.hpp"

using namespace nlfit;
using namespace nlfit_test;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- models ---------------------------------------------------------------------

class ProgramBuilder {
 public:
  ProgramBuilder(int nParams, int nVars) : nParams_(nParams), nVars_(nVars) {}
  int param(int j) { return emit(kParam, j); }
  int var(int v) { return emit(kVar, v); }
  int constant(double c) {
    consts_.push_back(c);
    return emit(kConst, static_cast<int>(consts_.size()) - 1);
  }
  int emit(int32_t op, int32_t a, int32_t b = 0) {
    words_.insert(words_.end(), {op, a, b});
    return static_cast<int>(words_.size() / kInstrWords) - 1;
  }
  std::shared_ptr<const Program> build() const {
    std::vector<int32_t> c = {kMagic, kVersion, static_cast<int32_t>(words_.size() / kInstrWords), nParams_, nVars_,
                              static_cast<int32_t>(consts_.size())};
    c.insert(c.end(), words_.begin(), words_.end());
    return Program::verify(c.data(), static_cast<int64_t>(c.size()), consts_.data(),
                           static_cast<int64_t>(consts_.size()));
  }

 private:
  int nParams_, nVars_;
  std::vector<int32_t> words_;
  std::vector<double> consts_;
};

// A model: its program and the same function in long double (for references).
struct Model {
  const char* name;
  std::shared_ptr<const Program> program;
  int p, nVars;
  std::function<long double(const long double* theta, const long double* x)> f;
};

// a*exp(-((x1-u)^2+(x2-v)^2)/(2*s^2))+c
Model gaussian2d() {
  ProgramBuilder b(5, 2);
  const int dx = b.emit(kPowi, b.emit(kSub, b.var(0), b.param(1)), 2);
  const int dy = b.emit(kPowi, b.emit(kSub, b.var(1), b.param(2)), 2);
  const int num = b.emit(kNeg, b.emit(kAdd, dx, dy));
  const int den = b.emit(kMul, b.constant(2.0), b.emit(kPowi, b.param(3), 2));
  b.emit(kAdd, b.emit(kMul, b.param(0), b.emit(kExp, b.emit(kDiv, num, den))), b.param(4));
  return {"2-D gaussian", b.build(), 5, 2, [](const long double* t, const long double* x) {
            const long double dx = x[0] - t[1], dy = x[1] - t[2];
            return t[0] * std::exp(-(dx * dx + dy * dy) / (2 * t[3] * t[3])) + t[4];
          }};
}

// a*exp(-(x-u)^2/(2*s^2))+c
Model gaussian1d() {
  ProgramBuilder b(4, 1);
  const int d = b.emit(kPowi, b.emit(kSub, b.var(0), b.param(1)), 2);
  const int den = b.emit(kMul, b.constant(2.0), b.emit(kPowi, b.param(2), 2));
  b.emit(kAdd, b.emit(kMul, b.param(0), b.emit(kExp, b.emit(kDiv, b.emit(kNeg, d), den))), b.param(3));
  return {"1-D gaussian", b.build(), 4, 1, [](const long double* t, const long double* x) {
            const long double d = x[0] - t[1];
            return t[0] * std::exp(-(d * d) / (2 * t[2] * t[2])) + t[3];
          }};
}

// a*exp(-b*x)+c
Model exponential() {
  ProgramBuilder b(3, 1);
  const int e = b.emit(kExp, b.emit(kMul, b.emit(kNeg, b.param(1)), b.var(0)));
  b.emit(kAdd, b.emit(kMul, b.param(0), e), b.param(2));
  return {"exponential", b.build(), 3, 1,
          [](const long double* t, const long double* x) { return t[0] * std::exp(-t[1] * x[0]) + t[2]; }};
}

// a*g(x) with g(x) = exp(-x/3)+0.5: the Poisson MLE of a is sum y / sum g.
Model scaledShape() {
  ProgramBuilder b(1, 1);
  const int g = b.emit(kAdd, b.emit(kExp, b.emit(kDiv, b.emit(kNeg, b.var(0)), b.constant(3.0))), b.constant(0.5));
  b.emit(kMul, b.param(0), g);
  return {"a*g(x)", b.build(), 1, 1,
          [](const long double* t, const long double* x) { return t[0] * (std::exp(-x[0] / 3) + 0.5L); }};
}

// ---- batches ----------------------------------------------------------------------

// M curves of one model: data, starts, and a problem/output pair over them.
struct Batch {
  Model model;
  int64_t m = 0;
  std::vector<std::vector<double>> x;  // shared (n values) or per curve (like y)
  mutable std::vector<const double*> xPtr;  // refreshed by problem(): a copied Batch points at its own x
  bool xPerCurve = false;
  std::vector<double> y, sigma, offsets, p0, truth, lower, upper;
  int64_t n = 0;  // regular curves (no offsets)

  BatchProblem problem() const {
    xPtr.clear();
    for (const auto& column : x) xPtr.push_back(column.data());
    BatchProblem b;
    b.program = model.program;
    b.x = xPtr.data();
    b.nVars = model.nVars;
    b.xPerCurve = xPerCurve;
    b.y = y.data();
    b.yLength = static_cast<int64_t>(y.size());
    b.nCurves = m;
    if (!offsets.empty()) b.offsets = offsets.data();
    b.pointsPerCurve = n;
    if (!sigma.empty()) b.sigma = sigma.data();
    b.p0 = p0.data();
    b.p0PerCurve = static_cast<int64_t>(p0.size()) == m * model.p && m > 1;
    if (!lower.empty()) b.lower = lower.data();
    if (!upper.empty()) b.upper = upper.data();
    b.boundsPerCurve = static_cast<int64_t>(std::max(lower.size(), upper.size())) == m * model.p && m > 1;
    b.ftol = 1e-10;
    b.xtol = 1e-10;
    return b;
  }
  void pointX(int64_t c, int64_t i, long double* xi) const {
    const int64_t row = xPerCurve ? (offsets.empty() ? c * n : static_cast<int64_t>(offsets[c])) + i : i;
    for (int v = 0; v < model.nVars; ++v) xi[v] = x[v][row];
  }
};

struct Output {
  std::vector<double> params, stdErrors, chi2, iterations, nfev;
  std::vector<uint8_t> status;
  Output(int64_t m, int p)
      : params(m * p, -7.0), stdErrors(m * p, -7.0), chi2(m, -7.0), iterations(m, -7.0), nfev(m, -7.0), status(m, 255) {}
  BatchOutput view() {
    return {params.data(), stdErrors.data(), chi2.data(), iterations.data(), nfev.data(), status.data()};
  }
  bool sameBits(const Output& o) const {
    auto same = [](const std::vector<double>& a, const std::vector<double>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
    };
    return same(params, o.params) && same(stdErrors, o.stdErrors) && same(chi2, o.chi2) &&
           same(iterations, o.iterations) && same(nfev, o.nfev) && status == o.status;
  }
};

Output fitAll(const Batch& b) {
  Output out(b.m, b.model.p);
  fitCurves(b.problem(), 0, b.m, out.view());
  return out;
}

// Regular curves of n points on a grid; truth and starts from `draw`, y from
// the model (in long double) plus noise.
Batch regularBatch(const Model& model, int64_t m, int64_t n, uint64_t seed,
                   const std::function<void(Rng&, double*)>& drawTruth, double startSpread, double noise = 0.0) {
  Batch b{model};
  b.m = m;
  b.n = n;
  Rng rng(seed);
  b.x.assign(model.nVars, std::vector<double>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (model.nVars == 2) {
      b.x[0][i] = static_cast<double>(i % 5);
      b.x[1][i] = static_cast<double>(i / 5);
    } else {
      b.x[0][i] = model.p == 3 ? 0.25 * static_cast<double>(i) : static_cast<double>(i);
    }
  }
  for (const auto& column : b.x) b.xPtr.push_back(column.data());
  const int p = model.p;
  b.y.resize(m * n);
  b.truth.resize(m * p);
  b.p0.resize(m * p);
  for (int64_t c = 0; c < m; ++c) {
    double* th = b.truth.data() + c * p;
    drawTruth(rng, th);
    long double tl[kMaxParams];
    for (int j = 0; j < p; ++j) tl[j] = th[j];
    for (int64_t i = 0; i < n; ++i) {
      long double xi[2];
      b.pointX(c, i, xi);
      b.y[c * n + i] = static_cast<double>(model.f(tl, xi)) + noise * rng.symmetric();
    }
    for (int j = 0; j < p; ++j) b.p0[c * p + j] = th[j] * (1.0 + startSpread * rng.symmetric());
  }
  return b;
}

void drawGaussian2d(Rng& r, double* t) {
  const double v[5] = {100 + 50 * r.symmetric(), 2 + 0.4 * r.symmetric(), 2 + 0.4 * r.symmetric(),
                       1.1 + 0.3 * r.symmetric(), 10 + 5 * r.symmetric()};
  std::copy(v, v + 5, t);
}
void drawGaussian1d(Rng& r, double* t) {
  const double v[4] = {100 + 50 * r.symmetric(), 16 + 3 * r.symmetric(), 3.5 + r.symmetric(), 10 + 5 * r.symmetric()};
  std::copy(v, v + 4, t);
}
void drawExponential(Rng& r, double* t) {
  const double v[3] = {5 + 2 * r.symmetric(), 0.8 + 0.3 * r.symmetric(), 1 + 0.5 * r.symmetric()};
  std::copy(v, v + 3, t);
}

bool sameBits(const double* a, const double* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(double)) == 0; }

struct AlignedBlock {
  explicit AlignedBlock(std::size_t n)
      : p(static_cast<double*>(::operator new[](n * sizeof(double), std::align_val_t(kAlign)))), size(n) {
    std::fill(p, p + n, 0.0);
  }
  ~AlignedBlock() { ::operator delete[](p, std::align_val_t(kAlign)); }
  AlignedBlock(const AlignedBlock&) = delete;
  AlignedBlock& operator=(const AlignedBlock&) = delete;
  double* p;
  std::size_t size;
};

// A curve fitted by hand the way a single fit pumps the machine: a fresh
// LevenbergMarquardt, kBlockSize blocks (several for a long curve, reduced
// by RangeReducer and finishTree), optionally a robust loss. The reference
// the batch fitter must match to the bit.
struct ManualFit {
  std::vector<double> x, factor;
  double fnorm = 0;
  LMStatus status = LMStatus::Running;
  int64_t nfev = 0, iterations = 0;
};

ManualFit fitByHand(const Model& model, const Columns& cols, int64_t n, const double* p0, const LMOptions& options,
                    Loss loss = Loss::Linear, double fScale = 1.0) {
  const int p = model.p, q = p + 1;
  BlockEvaluator ev(model.program);
  LevenbergMarquardt lm(p, p0, options);
  AlignedBlock A(static_cast<std::size_t>(kBlockSize) * q);
  std::vector<double> R(q * q), root(q * q);
  const int64_t nBlocks = blockCount(n);
  while (lm.running()) {
    ev.setParams(lm.ask());
    RangeReducer reducer(q);
    double cost = 0.0;
    for (int64_t blk = 0; blk < nBlocks; ++blk) {
      const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - blk * kBlockSize));
      ev.evalBlock(cols, blk * kBlockSize, rows, A.p);
      cost += applyLoss(loss, fScale, A.p, rows, q);
      blockFactor(A.p, q, R.data());
      reducer.push(blk, R.data());
    }
    const std::vector<double> packed = reducer.packedRoots();
    finishTree({{packed.data(), static_cast<int64_t>(packed.size())}}, nBlocks, q, root.data());
    lm.tell(root.data(), loss == Loss::Linear ? -1.0 : std::sqrt(2.0 * cost));
  }
  return {lm.x(), lm.factor(), lm.fnorm(), lm.status(), lm.nfev(), lm.iterations()};
}

// ---- narrow blocks -----------------------------------------------------------------

// A random program over nVars variables and p parameters, built from ops with
// tangent paths of every kind (views, own slots, temporaries, selections).
std::shared_ptr<const Program> randomProgram(Rng& rng, int p, int nVars) {
  for (;;) {
    ProgramBuilder b(p, nVars);
    int count = 0;
    for (int j = 0; j < p; ++j) b.param(j), ++count;
    for (int v = 0; v < nVars; ++v) b.var(v), ++count;
    b.constant(0.7), ++count;
    const int len = 4 + static_cast<int>(rng.below(12));
    for (int k = 0; k < len; ++k, ++count) {
      const int a = static_cast<int>(rng.below(count)), c = static_cast<int>(rng.below(count));
      const int kind = static_cast<int>(rng.below(10));
      if (kind < 4) {
        const int32_t ops[] = {kAdd, kSub, kMul, kDiv, kMin, kMax, kPow, kAtan2};
        b.emit(ops[rng.below(8)], a, c);
      } else if (kind < 8) {
        const int32_t ops[] = {kNeg, kExp, kLog, kSqrt, kSin, kCos, kTanh, kAtan};
        b.emit(ops[rng.below(8)], a);
      } else {
        b.emit(kPowi, a, static_cast<int32_t>(rng.below(7)) - 3);
      }
    }
    try {
      return b.build();
    } catch (const ProgramError&) {
    }
  }
}

void testNarrowBlocksMatchFullBlocks() {
  Rng rng(11);
  int programs = 0;
  bool allSame = true;
  std::string firstDifference;
  for (int trial = 0; trial < 120; ++trial) {
    const int p = 1 + static_cast<int>(rng.below(trial % 3 == 0 ? 12 : 6));  // q up to 13: sums from chunk 1 too
    const int nVars = 1 + static_cast<int>(rng.below(2));
    const auto program = randomProgram(rng, p, nVars);
    ++programs;
    const int q = p + 1;
    std::vector<std::vector<double>> x(nVars, std::vector<double>(kBlockSize));
    std::vector<const double*> xPtr;
    std::vector<double> y(kBlockSize), sigma(kBlockSize);
    for (auto& column : x) {
      for (double& v : column) v = 0.2 + 0.7 * (0.5 + 0.5 * rng.symmetric());
      xPtr.push_back(column.data());
    }
    for (double& v : y) v = rng.symmetric();
    for (double& v : sigma) v = 0.5 + 0.5 * (0.5 + 0.5 * rng.symmetric());
    std::vector<double> theta(p);
    for (double& t : theta) t = 0.3 + 0.5 * (0.5 + 0.5 * rng.symmetric());
    for (int width : kBlockWidths) {
      if (width == kBlockSize || width < q) continue;
      BlockEvaluator narrow(program, width), full(program);
      AlignedBlock An(static_cast<std::size_t>(width) * q), Af(static_cast<std::size_t>(kBlockSize) * q);
      std::vector<double> Rn(q * q), Rf(q * q);
      for (int rows : {width, width - 7, q, 1}) {
        if (rows < 1) continue;
        for (int weighted = 0; weighted < 2; ++weighted) {
          const Columns cols{xPtr.data(), nVars, y.data(), weighted ? sigma.data() : nullptr};
          narrow.setParams(theta.data());
          full.setParams(theta.data());
          narrow.evalBlock(cols, 3, rows, An.p);
          full.evalBlock(cols, 3, rows, Af.p);
          bool same = true;
          for (int j = 0; j < q; ++j) same &= sameBits(An.p + j * width, Af.p + j * kBlockSize, rows);
          blockFactor(An.p, q, Rn.data(), width);
          blockFactor(Af.p, q, Rf.data());
          // NaN factors (a point outside the model's domain) compare by position only.
          for (int k = 0; k < q * q; ++k) {
            same &= sameBits(&Rn[k], &Rf[k], 1) || (std::isnan(Rn[k]) && std::isnan(Rf[k]));
          }
          if (!same && allSame) {
            allSame = false;
            firstDifference = format("program %d, p = %d, width %d, rows %d, weighted %d", trial, p, width, rows, weighted);
          }
        }
      }
    }
  }
  check(allSame, format("narrow blocks give the rows and factor of a %d-row block, bit for bit, for %d random programs (%s)",
                        kBlockSize, programs, firstDifference.c_str()));

  bool rejected = false;
  try {
    BlockEvaluator ev(gaussian1d().program, 48);
  } catch (const std::invalid_argument&) {
    rejected = true;
  }
  check(rejected, "a block width outside kBlockWidths is rejected");
  rejected = false;
  try {
    std::vector<double> A(32 * 40), R(40 * 40);
    blockFactor(A.data(), 40, R.data(), 32);
  } catch (const ReductionError&) {
    rejected = true;
  }
  check(rejected, "a narrow block with more columns than rows is rejected");
}

void testReusedEvaluatorMatchesFresh() {
  // The coefficient tape: after many setParams, an evaluator writes what a
  // fresh one writes for the same parameters.
  Rng rng(23);
  bool allSame = true;
  for (int trial = 0; trial < 60; ++trial) {
    const int p = 1 + static_cast<int>(rng.below(5));
    const auto program = randomProgram(rng, p, 1);
    const int q = p + 1;
    std::vector<double> x(64), y(64);
    for (double& v : x) v = 0.3 + 0.5 * (0.5 + 0.5 * rng.symmetric());
    for (double& v : y) v = rng.symmetric();
    const double* xPtr[1] = {x.data()};
    const Columns cols{xPtr, 1, y.data(), nullptr};
    for (int width : {32, 64}) {
      BlockEvaluator reused(program, width);
      AlignedBlock A1(static_cast<std::size_t>(width) * q), A2(static_cast<std::size_t>(width) * q);
      for (int round = 0; round < 4; ++round) {
        std::vector<double> theta(p);
        for (double& t : theta) t = 0.2 + 0.8 * (0.5 + 0.5 * rng.symmetric());
        BlockEvaluator fresh(program, width);
        reused.setParams(theta.data());
        fresh.setParams(theta.data());
        reused.evalBlock(cols, 0, 30, A1.p);
        fresh.evalBlock(cols, 0, 30, A2.p);
        allSame &= sameBits(A1.p, A2.p, static_cast<std::size_t>(width) * q);
      }
    }
  }
  check(allSame, "an evaluator reused across parameter vectors writes the bits of a fresh one");

  // keepValues: the model values behind the residuals.
  const Model g = gaussian1d();
  BlockEvaluator ev(g.program, 32, true);
  std::vector<double> x(20), y(20, 1.0);
  for (int i = 0; i < 20; ++i) x[i] = i;
  const double* xPtr[1] = {x.data()};
  const double theta[4] = {50, 9, 3, 4};
  ev.setParams(theta);
  AlignedBlock A(32 * 5);
  ev.evalBlock(Columns{xPtr, 1, y.data(), nullptr}, 0, 20, A.p);
  std::vector<double> values(20);
  ev.evalValues(Columns{xPtr, 1, nullptr, nullptr}, 0, 20, values.data());
  const double* f = ev.modelValues();
  bool same = sameBits(f, values.data(), 20);
  for (int i = 0; i < 20; ++i) same &= A.p[4 * 32 + i] == f[i] - y[i];
  check(same, "modelValues() holds the values the residuals were computed from");
}

// ---- the machine --------------------------------------------------------------------

void testResetMatchesFreshMachine() {
  const Model model = exponential();
  Batch b = regularBatch(model, 40, 30, 5, drawExponential, 0.3, 0.01);
  LMOptions options;
  options.ftol = 1e-12;
  const std::vector<double> lower = {0.0, 0.5, -kInf}, upper = {kInf, 1.0, 1.2};
  LevenbergMarquardt reused(3, b.p0.data(), options);
  bool sameStart = true, sameEnd = true;
  for (int64_t c = 0; c < b.m; ++c) {
    const bool bounded = c % 2 == 1;
    LMOptions o = options;
    if (bounded) {
      o.lower = lower;
      o.upper = upper;
    }
    LevenbergMarquardt fresh(3, b.p0.data() + c * 3, o);
    reused.reset(b.p0.data() + c * 3, bounded ? lower.data() : nullptr, bounded ? upper.data() : nullptr);
    sameStart &= fresh.serialize() == reused.serialize();
    const double* xPtr[1] = {b.x[0].data()};
    const Columns cols{xPtr, 1, b.y.data() + c * b.n, nullptr};
    BlockEvaluator ev(model.program, 32);
    AlignedBlock A(32 * 4);
    std::vector<double> R(16);
    for (LevenbergMarquardt* lm : {&fresh, &reused}) {
      while (lm->running()) {
        ev.setParams(lm->ask());
        ev.evalBlock(cols, 0, static_cast<int>(b.n), A.p);
        blockFactor(A.p, 4, R.data(), 32);
        lm->tell(R.data());
      }
    }
    sameEnd &= fresh.serialize() == reused.serialize();
  }
  check(sameStart, "reset gives the state a fresh constructor gives (serialised bytes), with and without bounds");
  check(sameEnd, "a reset machine runs a fit to the bits of a fresh one");
  bool threw = false;
  try {
    const double l[3] = {0, 2, 0}, u[3] = {1, 1, 1};
    reused.reset(b.p0.data(), l, u);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("lower[1]") != std::string::npos;
  }
  check(threw, "reset rejects invalid bounds as the constructor does");
}

void testCurveTreeMatchesFinishTree() {
  // Through fitCurves: a curve of 2900 points (6 blocks) equals the fit
  // reduced by RangeReducer and finishTree.
  const Model model = exponential();
  Batch b = regularBatch(model, 2, 2900, 17, drawExponential, 0.2, 0.05);
  for (double& v : b.x[0]) v *= 0.004;
  for (int64_t c = 0; c < b.m; ++c) {
    long double tl[3] = {b.truth[c * 3], b.truth[c * 3 + 1], b.truth[c * 3 + 2]};
    Rng rng(c + 1);
    for (int64_t i = 0; i < b.n; ++i) {
      const long double xi = b.x[0][i];
      b.y[c * b.n + i] = static_cast<double>(model.f(tl, &xi)) + 0.05 * rng.symmetric();
    }
  }
  const Output out = fitAll(b);
  bool same = true;
  for (int64_t c = 0; c < b.m; ++c) {
    const double* xPtr[1] = {b.x[0].data()};
    LMOptions o;
    o.ftol = o.xtol = 1e-10;
    const ManualFit ref = fitByHand(model, Columns{xPtr, 1, b.y.data() + c * b.n, nullptr}, b.n, b.p0.data() + c * 3, o);
    same &= sameBits(ref.x.data(), out.params.data() + c * 3, 3) && out.nfev[c] == static_cast<double>(ref.nfev) &&
            out.status[c] == static_cast<uint8_t>(ref.status) && out.chi2[c] == ref.fnorm * ref.fnorm;
  }
  check(same, "a curve over several blocks: the fit of RangeReducer + finishTree, bit for bit");
}

// ---- fits -------------------------------------------------------------------------------

void testConvergesFromStartsWithin20Percent() {
  struct Case {
    Model model;
    int64_t n;
    void (*draw)(Rng&, double*);
  };
  const Case cases[] = {{gaussian2d(), 25, drawGaussian2d}, {gaussian1d(), 32, drawGaussian1d}, {exponential(), 20, drawExponential}};
  for (const Case& k : cases) {
    const int64_t m = 2000;
    const Batch b = regularBatch(k.model, m, k.n, 101, k.draw, 0.2);
    const Output out = fitAll(b);
    int64_t close = 0, converged = 0;
    double worst = 0.0;
    for (int64_t c = 0; c < m; ++c) {
      double err = 0.0;
      for (int j = 0; j < k.model.p; ++j) {
        const double want = b.truth[c * k.model.p + j];
        err = std::max(err, std::fabs(out.params[c * k.model.p + j] - want) / std::fabs(want));
      }
      close += err <= 1e-6;
      converged += lmSucceeded(static_cast<LMStatus>(out.status[c]));
      if (err <= 1e-6) worst = std::max(worst, err);
    }
    check(close >= m * 995 / 1000, format("%s, %lld points, noise-free, starts within 20%%: %lld of %lld within 1e-6 of the truth",
                                          k.model.name, static_cast<long long>(k.n), static_cast<long long>(close),
                                          static_cast<long long>(m)));
    check(converged >= m * 995 / 1000, format("%s: %lld of %lld report convergence", k.model.name,
                                              static_cast<long long>(converged), static_cast<long long>(m)));
  }
}

void testMatchesFitByHandAtFullWidth() {
  // A 25-point curve is fitted in a 32-row block by a reset machine; a fresh
  // machine over 512-row blocks gives the same bits.
  for (const Model& model : {gaussian2d(), gaussian1d()}) {
    const int64_t n = model.nVars == 2 ? 25 : 32;
    Batch b = regularBatch(model, 30, n, 7, model.nVars == 2 ? drawGaussian2d : drawGaussian1d, 0.2, 1.0);
    const Output out = fitAll(b);
    bool same = true;
    for (int64_t c = 0; c < b.m; ++c) {
      LMOptions o;
      o.ftol = o.xtol = 1e-10;
      const Columns cols{b.xPtr.data(), model.nVars, b.y.data() + c * n, nullptr};
      const ManualFit ref = fitByHand(model, cols, n, b.p0.data() + c * model.p, o);
      same &= sameBits(ref.x.data(), out.params.data() + c * model.p, model.p) &&
              out.nfev[c] == static_cast<double>(ref.nfev) && out.iterations[c] == static_cast<double>(ref.iterations) &&
              out.status[c] == static_cast<uint8_t>(ref.status) && out.chi2[c] == ref.fnorm * ref.fnorm;
      std::vector<double> cov(model.p * model.p);
      const int rank = covarianceFromFactor(ref.factor.data(), model.p, cov.data());
      const double scale = ref.fnorm * ref.fnorm / static_cast<double>(n - model.p);
      for (int j = 0; j < model.p; ++j) {
        const double want = rank < model.p ? kInf : std::sqrt(cov[j * model.p + j] * scale);
        same &= out.stdErrors[c * model.p + j] == want;
      }
    }
    check(same, std::string(model.name) + ": narrow-block batch fits equal fresh fits over 512-row blocks, bit for bit "
                                           "(parameters, errors, chi2, counts, status)");
  }
}

void testShardBoundariesChangeNothing() {
  const Model model = gaussian2d();
  const Batch b = regularBatch(model, 300, 25, 31, drawGaussian2d, 0.2, 2.0);
  const Output whole = fitAll(b);
  Rng rng(3);
  bool same = true;
  for (int round = 0; round < 4; ++round) {
    Output sharded(b.m, model.p);
    int64_t start = 0;
    while (start < b.m) {
      const int64_t end = std::min<int64_t>(b.m, start + 1 + rng.below(round == 0 ? 2 : 80));
      fitCurves(b.problem(), start, end, sharded.view());
      start = end;
    }
    same &= whole.sameBits(sharded);
  }
  // Shards in reverse order, one curve at a time.
  Output reversed(b.m, model.p);
  for (int64_t c = b.m - 1; c >= 0; --c) fitCurves(b.problem(), c, c + 1, reversed.view());
  same &= whole.sameBits(reversed);
  check(same, "any shard boundaries and order give the same bits");
}

void testBadCurvesAreIsolated() {
  const Model model = gaussian1d();
  Batch b = regularBatch(model, 12, 32, 41, drawGaussian1d, 0.2, 1.0);
  const Output clean = fitAll(b);
  Batch bad = b;
  bad.y[3 * 32 + 5] = kNaN;                        // curve 3: NaN in y
  bad.y[5 * 32 + 31] = kInf;                       // curve 5: infinite y
  bad.p0[7 * 4 + 2] = kNaN;                        // curve 7: NaN start (a failed first guess)
  bad.sigma.assign(b.y.size(), 1.0);
  bad.sigma[9 * 32] = 0.0;                         // curve 9: sigma 0
  Output withSigma = fitAll(bad);
  bool isolated = true;
  Batch unit = b;  // sigma 1 everywhere: the same fits as without sigma
  unit.sigma.assign(b.y.size(), 1.0);
  const Output unitOut = fitAll(unit);
  for (int64_t c = 0; c < b.m; ++c) {
    const bool broken = c == 3 || c == 5 || c == 7 || c == 9;
    if (broken) {
      bool allNaN = std::isnan(withSigma.chi2[c]) && withSigma.nfev[c] == 0 && withSigma.iterations[c] == 0;
      for (int j = 0; j < 4; ++j) allNaN &= std::isnan(withSigma.params[c * 4 + j]) && std::isnan(withSigma.stdErrors[c * 4 + j]);
      isolated &= withSigma.status[c] == static_cast<uint8_t>(BatchStatus::InvalidData) && allNaN;
    } else {
      isolated &= sameBits(withSigma.params.data() + c * 4, unitOut.params.data() + c * 4, 4) &&
                  withSigma.status[c] == unitOut.status[c] && withSigma.nfev[c] == unitOut.nfev[c];
    }
  }
  check(isolated, "NaN/Inf in y, a NaN start and sigma 0: invalid_data for those curves only, the others unchanged");
  bool unitSame = true;
  for (int64_t c = 0; c < b.m; ++c) unitSame &= sameBits(unitOut.params.data() + c * 4, clean.params.data() + c * 4, 4);
  check(unitSame, "sigma = 1 gives the fits without sigma");

  // NaN in a shared x: every curve is invalid; in a per-curve x: that curve only.
  Batch perCurve = b;
  perCurve.xPerCurve = true;
  perCurve.x.assign(1, std::vector<double>(b.y.size()));
  for (int64_t c = 0; c < b.m; ++c)
    for (int i = 0; i < 32; ++i) perCurve.x[0][c * 32 + i] = b.x[0][i];
  perCurve.xPtr = {perCurve.x[0].data()};
  const Output perCurveClean = fitAll(perCurve);
  check(perCurveClean.sameBits(clean), "x per curve with every curve's x equal to the shared x: the same bits");
  perCurve.x[0][4 * 32 + 10] = kNaN;
  const Output perCurveBad = fitAll(perCurve);
  bool onlyFour = true;
  for (int64_t c = 0; c < b.m; ++c) {
    onlyFour &= (perCurveBad.status[c] == static_cast<uint8_t>(BatchStatus::InvalidData)) == (c == 4);
  }
  check(onlyFour, "NaN in one curve's own x: invalid_data for that curve only");
  Batch sharedBad = b;
  sharedBad.x[0][0] = kNaN;
  const Output sharedOut = fitAll(sharedBad);
  check(std::all_of(sharedOut.status.begin(), sharedOut.status.end(),
                    [](uint8_t s) { return s == static_cast<uint8_t>(BatchStatus::InvalidData); }),
        "NaN in a shared x: every curve is invalid_data");

  // A constant y: a legitimate fit for a gaussian (a = 0 fits exactly); it
  // must end without crashing and leave the neighbours alone.
  Batch flat = b;
  std::fill(flat.y.begin() + 2 * 32, flat.y.begin() + 3 * 32, 7.0);
  const Output flatOut = fitAll(flat);
  bool neighbours = true;
  for (int64_t c = 0; c < b.m; ++c) {
    if (c != 2) neighbours &= sameBits(flatOut.params.data() + c * 4, clean.params.data() + c * 4, 4);
  }
  check(neighbours && flatOut.status[2] != 255 && flatOut.status[2] < kBatchStatusCount,
        format("a constant curve ends with a status (%s) and leaves its neighbours unchanged", batchStatusName(flatOut.status[2])));
}

void testRaggedCurves() {
  // Lengths: empty, fewer points than parameters, exactly p, narrow widths of
  // every size, one full block, and several blocks.
  const Model model = exponential();
  const int64_t lengths[] = {0, 2, 3, 9, 31, 32, 33, 64, 100, 128, 129, 400, 512, 513, 1500};
  Batch b{model};
  b.m = static_cast<int64_t>(sizeof lengths / sizeof lengths[0]);
  b.offsets.push_back(0);
  for (int64_t len : lengths) b.offsets.push_back(b.offsets.back() + static_cast<double>(len));
  const int64_t total = static_cast<int64_t>(b.offsets.back());
  b.xPerCurve = true;
  b.x.assign(1, std::vector<double>(total));
  b.y.resize(total);
  Rng rng(77);
  b.truth.resize(b.m * 3);
  b.p0.resize(b.m * 3);
  for (int64_t c = 0; c < b.m; ++c) {
    drawExponential(rng, b.truth.data() + c * 3);
    const long double tl[3] = {b.truth[c * 3], b.truth[c * 3 + 1], b.truth[c * 3 + 2]};
    const int64_t first = static_cast<int64_t>(b.offsets[c]);
    for (int64_t i = 0; i < lengths[c]; ++i) {
      b.x[0][first + i] = 5.0 * static_cast<double>(i) / static_cast<double>(std::max<int64_t>(lengths[c], 1));
      const long double xi = b.x[0][first + i];
      b.y[first + i] = static_cast<double>(model.f(tl, &xi)) + 0.02 * rng.symmetric();
    }
    for (int j = 0; j < 3; ++j) b.p0[c * 3 + j] = b.truth[c * 3 + j] * (1.0 + 0.2 * rng.symmetric());
  }
  b.xPtr = {b.x[0].data()};
  const Output out = fitAll(b);
  bool statuses = out.status[0] == static_cast<uint8_t>(BatchStatus::TooFewPoints) &&
                  out.status[1] == static_cast<uint8_t>(BatchStatus::TooFewPoints);
  bool same = true;
  for (int64_t c = 2; c < b.m; ++c) {
    statuses &= out.status[c] < static_cast<uint8_t>(BatchStatus::InvalidData);
    const double* xPtr[1] = {b.x[0].data() + static_cast<int64_t>(b.offsets[c])};
    LMOptions o;
    o.ftol = o.xtol = 1e-10;
    const ManualFit ref = fitByHand(model, Columns{xPtr, 1, b.y.data() + static_cast<int64_t>(b.offsets[c]), nullptr},
                                    lengths[c], b.p0.data() + c * 3, o);
    same &= sameBits(ref.x.data(), out.params.data() + c * 3, 3) && out.nfev[c] == static_cast<double>(ref.nfev);
  }
  check(statuses, "ragged: 0 and 2 points give too_few_points, every other length a solver status");
  check(same, "ragged curves of 3 to 1500 points (every width, several blocks) equal fits by hand, bit for bit");
  // n = p: chi2 0 and no degrees of freedom, so the scaled errors are Infinity.
  check(std::isinf(out.stdErrors[2 * 3]) || std::isnan(out.stdErrors[2 * 3]),
        format("3 points, 3 parameters: errors are not finite (%g)", out.stdErrors[2 * 3]));
  // Any shard of the ragged batch gives the same bits.
  Output sharded(b.m, 3);
  for (int64_t c = 0; c < b.m; c += 4) fitCurves(b.problem(), c, std::min<int64_t>(b.m, c + 4), sharded.view());
  check(sharded.sameBits(out), "ragged: shards give the same bits");
}

void testPerCurveStartsAndBounds() {
  const Model model = gaussian1d();
  const Batch b = regularBatch(model, 8, 32, 51, drawGaussian1d, 0.0, 0.5);
  // Shared start vs the same start repeated per curve.
  Batch shared = b;
  shared.p0.assign(b.p0.begin(), b.p0.begin() + 4);
  Batch repeated = b;
  for (int64_t c = 0; c < b.m; ++c) std::copy(shared.p0.begin(), shared.p0.end(), repeated.p0.begin() + c * 4);
  check(fitAll(shared).sameBits(fitAll(repeated)), "a shared start equals the same start given per curve");

  // Per-curve bounds: curve c's width s is held at most 2 (the truth is 2.5 to
  // 4.5), amplitude at least 0: s ends on its bound, with a NaN error.
  Batch bounded = b;
  bounded.lower.assign(b.m * 4, -kInf);
  bounded.upper.assign(b.m * 4, kInf);
  for (int64_t c = 0; c < b.m; ++c) {
    bounded.lower[c * 4] = 0.0;
    if (c % 2 == 0) bounded.upper[c * 4 + 2] = 2.0;
    bounded.p0[c * 4 + 2] = 1.5;
  }
  const Output out = fitAll(bounded);
  bool held = true, free = true;
  for (int64_t c = 0; c < b.m; ++c) {
    if (c % 2 == 0) {
      held &= out.params[c * 4 + 2] == 2.0 && std::isnan(out.stdErrors[c * 4 + 2]) && std::isfinite(out.stdErrors[c * 4]);
    } else {
      free &= std::fabs(out.params[c * 4 + 2] - b.truth[c * 4 + 2]) < 0.05 && std::isfinite(out.stdErrors[c * 4 + 2]);
    }
  }
  check(held, "per-curve bounds: a parameter held on its bound sits on it exactly, with a NaN error, others finite");
  check(free, "per-curve bounds: curves whose bound is not active fit the truth");
  Batch invalid = bounded;
  invalid.upper[5 * 4 + 1] = invalid.lower[5 * 4 + 1] = 3.0;
  bool threw = false;
  try {
    fitAll(invalid);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("curve 5") != std::string::npos;
  }
  check(threw, "equal bounds for one curve are an input error that names the curve");
}

void testRobustLossAndErrors() {
  const Model model = exponential();
  Batch b = regularBatch(model, 20, 40, 61, drawExponential, 0.2, 0.02);
  for (int64_t c = 0; c < b.m; ++c) b.y[c * 40 + 7] += 3.0;  // an outlier per curve
  BatchProblem problem = b.problem();
  problem.loss = Loss::SoftL1;
  problem.fScale = 0.1;
  Output out(b.m, 3);
  fitCurves(problem, 0, b.m, out.view());
  bool same = true, rss = true;
  for (int64_t c = 0; c < b.m; ++c) {
    LMOptions o;
    o.ftol = o.xtol = 1e-10;
    const double* xPtr[1] = {b.x[0].data()};
    const ManualFit ref = fitByHand(model, Columns{xPtr, 1, b.y.data() + c * 40, nullptr}, 40, b.p0.data() + c * 3, o,
                                    Loss::SoftL1, 0.1);
    same &= sameBits(ref.x.data(), out.params.data() + c * 3, 3) && out.nfev[c] == static_cast<double>(ref.nfev);
    // chi2 with a robust loss: the plain sum of squared residuals at the solution.
    long double sum = 0;
    const long double t[3] = {out.params[c * 3], out.params[c * 3 + 1], out.params[c * 3 + 2]};
    for (int i = 0; i < 40; ++i) {
      const long double xi = b.x[0][i];
      const long double r = model.f(t, &xi) - b.y[c * 40 + i];
      sum += r * r;
    }
    rss &= std::fabs(out.chi2[c] - static_cast<double>(sum)) <= 1e-9 * static_cast<double>(sum);
  }
  check(same, "soft_l1: batch fits equal fits by hand with the rescaled rows and cost, bit for bit");
  check(rss, "with a robust loss chi2 is the plain sum of squares at the solution");

  // absoluteSigma: errors from (J^T J)^-1 alone; relative: times chi2 / dof.
  Batch weighted = regularBatch(model, 5, 30, 62, drawExponential, 0.2, 0.01);
  weighted.sigma.assign(weighted.y.size(), 0.01);
  BatchProblem relative = weighted.problem();
  BatchProblem absolute = relative;
  absolute.absoluteSigma = true;
  Output rel(5, 3), abs(5, 3);
  fitCurves(relative, 0, 5, rel.view());
  fitCurves(absolute, 0, 5, abs.view());
  bool scaled = true;
  for (int64_t c = 0; c < 5; ++c) {
    const double factor = std::sqrt(rel.chi2[c] / 27.0);
    for (int j = 0; j < 3; ++j) scaled &= std::fabs(rel.stdErrors[c * 3 + j] - abs.stdErrors[c * 3 + j] * factor) <=
                                           1e-12 * rel.stdErrors[c * 3 + j];
  }
  check(scaled, "relative sigma scales the absolute errors by sqrt(chi2 / (n - p))");
}

// ---- Poisson -------------------------------------------------------------------------------

// Poisson counts by inversion of the CDF (means here are below 1000).
double poissonCount(Rng& rng, double mean) {
  const double u = 0.5 + 0.5 * rng.symmetric();
  double k = 0, term = std::exp(-mean), cdf = term;
  while (u > cdf && k < 5000) {
    k += 1;
    term *= mean / k;
    cdf += term;
  }
  return k;
}

long double devianceLongDouble(const Model& model, const Batch& b, int64_t c, const long double* theta) {
  long double d = 0;
  for (int64_t i = 0; i < b.n; ++i) {
    long double xi[2];
    b.pointX(c, i, xi);
    const long double f = model.f(theta, xi), y = b.y[c * b.n + i];
    d += 2 * (f - y + (y > 0 ? y * std::log(y / f) : 0.0L));
  }
  return d;
}

void testPoissonDevianceTerm() {
  // Against the direct formula in long double, across the cancellation range.
  double worst = 0;
  Rng rng(9);
  for (int k = 0; k < 20000; ++k) {
    const double y = std::floor(1000.0 * (0.5 + 0.5 * rng.symmetric()));
    const double f = std::max(1e-3, y * (1.0 + std::pow(10.0, -1.0 - 7.0 * (0.5 + 0.5 * rng.symmetric())) * rng.symmetric()) + 0.3 * rng.symmetric());
    // y (t - log1p(t)) with t = (f - y) / y: f - y is exact, and log1p keeps
    // long double's digits where the term is tiny beside y.
    const long double t = (static_cast<long double>(f) - y) / y;
    const long double want = y > 0 ? y * (t - std::log1p(t)) : static_cast<long double>(f);
    const double got = poissonDevianceTerm(y, f);
    if (want > 0) worst = std::max(worst, static_cast<double>(std::fabs(got - want) / want));
  }
  // The long double reference itself loses digits for f very near y; 1e-9 is
  // far below what the cancellation of the naive double formula would give.
  check(worst < 1e-9, format("poissonDevianceTerm matches a long double reference within %.2g relative", worst));
  check(poissonDevianceTerm(0.0, 2.5) == 2.5 && poissonDevianceTerm(4.0, 4.0) == 0.0,
        "poissonDevianceTerm: 0 ln 0 = 0, and 0 at f = y");
  check(std::isfinite(poissonDevianceTerm(1e3, 1e-320)) && std::isfinite(poissonDevianceTerm(1e-320, 1e10)),
        "poissonDevianceTerm: no overflow of y / f");
}

void testPoissonEstimator() {
  // a*g(x): the maximum-likelihood a is sum y / sum g exactly.
  {
    const Model model = scaledShape();
    Batch b = regularBatch(model, 50, 40, 71, [](Rng& r, double* t) { t[0] = 20 + 10 * r.symmetric(); }, 0.2);
    Rng rng(5);
    for (int64_t c = 0; c < b.m; ++c) {
      for (int64_t i = 0; i < b.n; ++i) b.y[c * b.n + i] = poissonCount(rng, b.y[c * b.n + i]);
    }
    BatchProblem problem = b.problem();
    problem.estimator = Estimator::Poisson;
    Output out(b.m, 1);
    fitCurves(problem, 0, b.m, out.view());
    double worst = 0;
    bool errors = true;
    for (int64_t c = 0; c < b.m; ++c) {
      long double sy = 0, sg = 0;
      for (int64_t i = 0; i < b.n; ++i) {
        sy += b.y[c * b.n + i];
        sg += std::exp(-static_cast<long double>(b.x[0][i]) / 3) + 0.5L;
      }
      const long double a = sy / sg;
      worst = std::max(worst, static_cast<double>(std::fabs(out.params[c] - a) / a));
      // Inverse Fisher information: a / sum g.
      errors &= std::fabs(out.stdErrors[c] - std::sqrt(static_cast<double>(a / sg))) <= 1e-6 * out.stdErrors[c];
      const long double theta[1] = {a};
      errors &= std::fabs(out.chi2[c] - static_cast<double>(devianceLongDouble(model, b, c, theta))) <= 1e-9 * (1 + out.chi2[c]);
    }
    check(worst < 1e-9, format("Poisson, a*g(x): the fit is the closed-form MLE sum y / sum g (worst %.2g relative)", worst));
    check(errors, "Poisson: the error is the inverse Fisher information, chi2 the deviance");
  }
  // The 2-D gaussian on simulated counts: at the fit, the long-double
  // gradient of the deviance vanishes, and no nearby point has a lower
  // deviance (a symmetric check in every parameter).
  {
    const Model model = gaussian2d();
    Batch b = regularBatch(model, 200, 25, 72, drawGaussian2d, 0.2);
    Rng rng(6);
    for (double& v : b.y) v = poissonCount(rng, v);
    BatchProblem problem = b.problem();
    problem.estimator = Estimator::Poisson;
    Output out(b.m, 5);
    fitCurves(problem, 0, b.m, out.view());
    int64_t stationary = 0, minimal = 0, converged = 0;
    for (int64_t c = 0; c < b.m; ++c) {
      converged += lmSucceeded(static_cast<LMStatus>(out.status[c]));
      long double theta[5];
      for (int j = 0; j < 5; ++j) theta[j] = out.params[c * 5 + j];
      // Gradient sum (1 - y/f) df/dtheta_j, by central differences of f in long double.
      bool small = true, lowest = true;
      const long double d0 = devianceLongDouble(model, b, c, theta);
      for (int j = 0; j < 5; ++j) {
        const long double h = 1e-6L * std::max(1.0L, std::fabs(theta[j]));
        long double g = 0, scale = 0;
        for (int64_t i = 0; i < 25; ++i) {
          long double xi[2];
          b.pointX(c, i, xi);
          long double up[5], down[5];
          std::copy(theta, theta + 5, up);
          std::copy(theta, theta + 5, down);
          up[j] += h;
          down[j] -= h;
          const long double df = (model.f(up, xi) - model.f(down, xi)) / (2 * h);
          const long double f = model.f(theta, xi), y = b.y[c * 25 + i];
          g += (1 - y / f) * df;
          scale += std::fabs(df);
        }
        small &= std::fabs(g) <= 1e-6L * scale;
        const long double step = 1e-4L * std::max(1.0L, std::fabs(theta[j]));
        for (long double sign : {-1.0L, 1.0L}) {
          long double moved[5];
          std::copy(theta, theta + 5, moved);
          moved[j] += sign * step;
          lowest &= devianceLongDouble(model, b, c, moved) >= d0;
        }
      }
      stationary += small;
      minimal += lowest;
    }
    check(converged == b.m, format("Poisson 2-D gaussian: %lld of %lld converge", static_cast<long long>(converged),
                                   static_cast<long long>(b.m)));
    check(stationary == b.m, format("Poisson 2-D gaussian: the deviance gradient vanishes at %lld of %lld fits",
                                    static_cast<long long>(stationary), static_cast<long long>(b.m)));
    check(minimal == b.m, format("Poisson 2-D gaussian: no neighbouring point has a lower deviance at %lld of %lld fits",
                                 static_cast<long long>(minimal), static_cast<long long>(b.m)));
  }
  // Bad input: negative counts are invalid data; a model value <= 0 at the
  // start ends that fit (nonfinite_start), at a trial point shrinks the step.
  {
    const Model model = exponential();
    Batch b = regularBatch(model, 3, 20, 73, drawExponential, 0.1);
    for (double& v : b.y) v = std::round(10 * v);
    for (int64_t c = 0; c < 3; ++c) b.p0[c * 3] *= 10, b.p0[c * 3 + 2] *= 10;
    b.y[1 * 20 + 4] = -1.0;
    b.p0[2 * 3 + 2] = -1e3;  // curve 2 starts with f < 0 everywhere
    BatchProblem problem = b.problem();
    problem.estimator = Estimator::Poisson;
    Output out(3, 3);
    fitCurves(problem, 0, 3, out.view());
    check(lmSucceeded(static_cast<LMStatus>(out.status[0])) &&
              out.status[1] == static_cast<uint8_t>(BatchStatus::InvalidData) &&
              out.status[2] == static_cast<uint8_t>(LMStatus::NonFiniteStart) && std::isnan(out.chi2[2]),
          format("Poisson: a negative count is invalid_data, f <= 0 at the start nonfinite_start (statuses %d %d %d)",
                 out.status[0], out.status[1], out.status[2]));
    bool threw = false;
    try {
      b.sigma.assign(b.y.size(), 1.0);
      BatchProblem withSigma = b.problem();
      withSigma.estimator = Estimator::Poisson;
      fitCurves(withSigma, 0, 3, out.view());
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    check(threw, "Poisson with sigma is an input error");
  }
}

void testStatusNamesAndValidation() {
  check(std::string(batchStatusName(1)) == "ftol" && std::string(batchStatusName(9)) == "nonfinite_start" &&
            std::string(batchStatusName(12)) == "invalid_data" && std::string(batchStatusName(13)) == "too_few_points" &&
            std::string(batchStatusName(kBatchStatusCount)) == "unknown",
        "status names: the solver's, then invalid_data and too_few_points");
  const Model model = exponential();
  const Batch b = regularBatch(model, 4, 10, 81, drawExponential, 0.1);
  auto rejects = [&](const std::function<void(BatchProblem&)>& edit, int64_t start, int64_t end, const char* fragment) {
    BatchProblem problem = b.problem();
    edit(problem);
    Output out(b.m, 3);
    try {
      fitCurves(problem, start, end, out.view());
    } catch (const std::invalid_argument& e) {
      return std::string(e.what()).find(fragment) != std::string::npos;
    }
    return false;
  };
  check(rejects([](BatchProblem&) {}, 2, 5, "not within"), "a curve range past the end is rejected");
  check(rejects([](BatchProblem& p) { p.loss = Loss::Huber; p.estimator = Estimator::Poisson; }, 0, 4, "robust loss"),
        "Poisson with a robust loss is rejected");
  check(rejects([](BatchProblem& p) { p.fScale = 0; }, 0, 4, "fScale"), "fScale 0 is rejected");
  check(rejects([](BatchProblem& p) { p.nVars = 2; }, 0, 4, "variables"), "a wrong number of x columns is rejected");
  std::vector<double> badOffsets = {0, 10, 5, 30, 40};
  check(rejects([&](BatchProblem& p) { p.offsets = badOffsets.data(); }, 0, 4, "offsets[2]"),
        "decreasing offsets are rejected, naming the offset");
  Output untouched(b.m, 3);
  fitCurves(b.problem(), 2, 2, untouched.view());
  check(untouched.status[2] == 255, "an empty range writes nothing");
}

}  // namespace

int main() {
  const std::pair<const char*, void (*)()> tests[] = {
      {"narrow blocks", testNarrowBlocksMatchFullBlocks},
      {"reused evaluator", testReusedEvaluatorMatchesFresh},
      {"reset", testResetMatchesFreshMachine},
      {"curve tree", testCurveTreeMatchesFinishTree},
      {"convergence", testConvergesFromStartsWithin20Percent},
      {"fit by hand", testMatchesFitByHandAtFullWidth},
      {"shards", testShardBoundariesChangeNothing},
      {"bad curves", testBadCurvesAreIsolated},
      {"ragged", testRaggedCurves},
      {"per-curve starts and bounds", testPerCurveStartsAndBounds},
      {"robust loss and errors", testRobustLossAndErrors},
      {"deviance term", testPoissonDevianceTerm},
      {"Poisson", testPoissonEstimator},
      {"status and validation", testStatusNamesAndValidation},
  };
  return runTests(tests);
}
