// Tests of the model VM (native/kernel/program.cpp): verifier messages,
// values and exact derivatives of every opcode (closed forms and finite
// differences), masks, padding, weighting, determinism, random programs
// against a naive dense interpreter, and a fuzz loop over hostile bytecode.
//
// Build with sanitizers so any out-of-bounds access fails the run (and also
// at -O3 -march=native, where the libmvec loops are really vectorised):
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover
//       -fno-math-errno -fno-trapping-math -fopenmp-simd -march=native
//       -Inative/kernel native/kernel/program.cpp test/native/program_test.cpp
//       -o /tmp/program_test -lm && /tmp/program_test
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "check.hpp"
#include "program.hpp"

using namespace nlfit;
using namespace nlfit_test;

namespace {


// ---- building programs by hand ------------------------------------------------

class ProgramBuilder {
 public:
  ProgramBuilder(int nParams, int nVars) : nParams_(nParams), nVars_(nVars) {}
  int constant(double c) {
    consts_.push_back(c);
    return emit(kConst, static_cast<int>(consts_.size()) - 1);
  }
  int param(int j) { return emit(kParam, j); }
  int var(int v) { return emit(kVar, v); }
  int unary(Op op, int a) { return emit(op, a); }
  int binary(Op op, int a, int b) { return emit(op, a, b); }
  int powi(int a, int n) { return emit(kPowi, a, n); }
  int emit(int32_t op, int32_t a, int32_t b = 0) {
    words_.insert(words_.end(), {op, a, b});
    return static_cast<int>(words_.size() / kInstrWords) - 1;
  }
  std::vector<int32_t> code() const {
    std::vector<int32_t> c = {kMagic, kVersion, static_cast<int32_t>(words_.size() / kInstrWords),
                              nParams_, nVars_, static_cast<int32_t>(consts_.size())};
    c.insert(c.end(), words_.begin(), words_.end());
    return c;
  }
  const std::vector<double>& consts() const { return consts_; }
  std::shared_ptr<const Program> build() const {
    std::vector<int32_t> c = code();
    return Program::verify(c.data(), static_cast<int64_t>(c.size()), consts_.data(),
                           static_cast<int64_t>(consts_.size()));
  }

 private:
  int nParams_, nVars_;
  std::vector<int32_t> words_;
  std::vector<double> consts_;
};

bool isBinaryOpcode(int op) { return (op >= kAdd && op <= kMax) || (op >= kLt && op <= kOr); }

// ---- data and evaluation ---------------------------------------------------------

struct AlignedBlock {
  explicit AlignedBlock(std::size_t n) : size(n), p(static_cast<double*>(::operator new[](
                                                  n * sizeof(double), std::align_val_t(kAlign)))) {
    std::fill(p, p + n, -12345.0);
  }
  ~AlignedBlock() { ::operator delete[](p, std::align_val_t(kAlign)); }
  AlignedBlock(const AlignedBlock&) = delete;
  AlignedBlock& operator=(const AlignedBlock&) = delete;
  std::size_t size;
  double* p;
};

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double uniform(uint64_t& s) { return static_cast<double>(splitmix(s) >> 11) * 0x1.0p-53; }

// One dataset of n points; columns are separate heap arrays of exactly n
// doubles so the sanitizer sees any read past the end.
struct Dataset {
  std::vector<std::vector<double>> vars;
  std::vector<const double*> varPtrs;
  std::vector<double> y, sigma;
  Columns columns(bool withSigma) const {
    Columns c;
    c.vars = varPtrs.data();
    c.nVars = static_cast<int>(varPtrs.size());
    c.y = y.data();
    c.sigma = withSigma ? sigma.data() : nullptr;
    return c;
  }
};

Dataset makeData(int n, int nVars, uint64_t seed, double lo = 0.1, double hi = 0.9) {
  Dataset d;
  d.vars.resize(nVars);
  for (auto& v : d.vars) {
    v.resize(n);
    for (double& x : v) x = lo + (hi - lo) * uniform(seed);
  }
  for (auto& v : d.vars) d.varPtrs.push_back(v.data());
  d.y.resize(n);
  d.sigma.resize(n);
  for (double& x : d.y) x = uniform(seed) - 0.5;
  for (double& x : d.sigma) x = 0.5 + 1.5 * uniform(seed);
  return d;
}

std::vector<double> values(BlockEvaluator& ev, const Dataset& d, const double* theta, int rows) {
  std::vector<double> f(rows);
  ev.setParams(theta);
  ev.evalValues(d.columns(false), 0, rows, f.data());
  return f;
}

bool sameBits(const double* a, const double* b, std::size_t n) {
  return std::memcmp(a, b, n * sizeof(double)) == 0;
}

bool isPositiveZero(double v) { return v == 0.0 && !std::signbit(v); }

// ---- operands for the opcode tests ------------------------------------------------
// Each operand is emitted into a program and also evaluated here with its
// gradient, so a derivative can be checked against a closed form.

constexpr int kTestParams = 5;  // parameter 4 is never used: its column must be 0
const double kTheta[kTestParams] = {0.3, 0.2, 0.5, 0.7, 1.3};

struct OperandSpec {
  const char* name;
  std::function<int(ProgramBuilder&)> emit;
  std::function<double(double x, const double* th, double* grad)> eval;
};

// Operand "a": values in (0, 0.6) for every kind, so all unary ops are defined.
std::vector<OperandSpec> operandsA() {
  return {
      {"a=p0*x+p1 (varying)",
       [](ProgramBuilder& b) { return b.binary(kAdd, b.binary(kMul, b.param(0), b.var(0)), b.param(1)); },
       [](double x, const double* t, double* g) { g[0] = x; g[1] = 1; return t[0] * x + t[1]; }},
      {"a=0.25*x+0.3 (varying, no params)",
       [](ProgramBuilder& b) { return b.binary(kAdd, b.binary(kMul, b.constant(0.25), b.var(0)), b.constant(0.3)); },
       [](double x, const double*, double*) { return 0.25 * x + 0.3; }},
      {"a=p0+p1 (scalar)",
       [](ProgramBuilder& b) { return b.binary(kAdd, b.param(0), b.param(1)); },
       [](double, const double* t, double* g) { g[0] = 1; g[1] = 1; return t[0] + t[1]; }},
      {"a=0.45 (constant)",
       [](ProgramBuilder& b) { return b.constant(0.45); },
       [](double, const double*, double*) { return 0.45; }},
  };
}

// Operand "b": values in (0.7, 1.2), away from 0, for div, pow and atan2.
std::vector<OperandSpec> operandsB() {
  return {
      {"b=p2*x+p3 (varying)",
       [](ProgramBuilder& b) { return b.binary(kAdd, b.binary(kMul, b.param(2), b.var(0)), b.param(3)); },
       [](double x, const double* t, double* g) { g[2] = x; g[3] = 1; return t[2] * x + t[3]; }},
      {"b=0.4*x+0.8 (varying, no params)",
       [](ProgramBuilder& b) { return b.binary(kAdd, b.binary(kMul, b.constant(0.4), b.var(0)), b.constant(0.8)); },
       [](double x, const double*, double*) { return 0.4 * x + 0.8; }},
      {"b=p2+p3 (scalar)",
       [](ProgramBuilder& b) { return b.binary(kAdd, b.param(2), b.param(3)); },
       [](double, const double* t, double* g) { g[2] = 1; g[3] = 1; return t[2] + t[3]; }},
      {"b=0.9 (constant)",
       [](ProgramBuilder& b) { return b.constant(0.9); },
       [](double, const double*, double*) { return 0.9; }},
  };
}

// Operand "b" for min and max: crosses the range of every "a" so both
// branches are taken within a block.
std::vector<OperandSpec> operandsCrossing() {
  return {
      {"b=p2*x-p3+0.8 (varying)",
       [](ProgramBuilder& b) {
         return b.binary(kAdd, b.binary(kSub, b.binary(kMul, b.param(2), b.var(0)), b.param(3)), b.constant(0.8));
       },
       [](double x, const double* t, double* g) { g[2] = x; g[3] = -1; return t[2] * x - t[3] + 0.8; }},
      {"b=0.6*x+0.1 (varying, no params)",
       [](ProgramBuilder& b) { return b.binary(kAdd, b.binary(kMul, b.constant(0.6), b.var(0)), b.constant(0.1)); },
       [](double x, const double*, double*) { return 0.6 * x + 0.1; }},
      {"b=p2*p3 (scalar)",
       [](ProgramBuilder& b) { return b.binary(kMul, b.param(2), b.param(3)); },
       [](double, const double* t, double* g) { g[2] = t[3]; g[3] = t[2]; return t[2] * t[3]; }},
      {"b=0.4 (constant)",
       [](ProgramBuilder& b) { return b.constant(0.4); },
       [](double, const double*, double*) { return 0.4; }},
  };
}

// Operand for unary ops defined on negative numbers: crosses zero.
OperandSpec operandSigned() {
  return {"a=p0*x-p1*0.75 (varying, crosses 0)",
          [](ProgramBuilder& b) {
            return b.binary(kSub, b.binary(kMul, b.param(0), b.var(0)), b.binary(kMul, b.param(1), b.constant(0.75)));
          },
          [](double x, const double* t, double* g) {
            g[0] = x;
            g[1] = -0.75;
            return t[0] * x - t[1] * 0.75;
          }};
}

// Closed forms: value and partial derivatives, from <cmath> directly.
double refUnary(int op, double a, double* da) {
  switch (op) {
    case kNeg: *da = -1; return -a;
    case kExp: *da = std::exp(a); return std::exp(a);
    case kLog: *da = 1 / a; return std::log(a);
    case kLog10: *da = 1 / (a * std::log(10.0)); return std::log10(a);
    case kSqrt: *da = 0.5 / std::sqrt(a); return std::sqrt(a);
    case kAbs: *da = a > 0 ? 1 : a < 0 ? -1 : 0; return std::fabs(a);
    case kSin: *da = std::cos(a); return std::sin(a);
    case kCos: *da = -std::sin(a); return std::cos(a);
    case kTan: *da = 1 / (std::cos(a) * std::cos(a)); return std::tan(a);
    case kAsin: *da = 1 / std::sqrt(1 - a * a); return std::asin(a);
    case kAcos: *da = -1 / std::sqrt(1 - a * a); return std::acos(a);
    case kAtan: *da = 1 / (1 + a * a); return std::atan(a);
    case kSinh: *da = std::cosh(a); return std::sinh(a);
    case kCosh: *da = std::sinh(a); return std::cosh(a);
    case kTanh: *da = 1 / (std::cosh(a) * std::cosh(a)); return std::tanh(a);
  }
  return NAN;
}

double refBinary(int op, double a, double b, double* da, double* db) {
  switch (op) {
    case kAdd: *da = 1; *db = 1; return a + b;
    case kSub: *da = 1; *db = -1; return a - b;
    case kMul: *da = b; *db = a; return a * b;
    case kDiv: *da = 1 / b; *db = -a / (b * b); return a / b;
    case kPow: *da = b * std::pow(a, b - 1); *db = std::pow(a, b) * std::log(a); return std::pow(a, b);
    case kAtan2: *da = b / (a * a + b * b); *db = -a / (a * a + b * b); return std::atan2(a, b);
    case kMin: *da = a <= b; *db = !(a <= b); return a <= b ? a : b;
    case kMax: *da = a >= b; *db = !(a >= b); return a >= b ? a : b;
  }
  return NAN;
}

// Evaluates `prog` on one block of `rows` points and checks: values against
// refValue, every derivative column against the closed form and against
// central finite differences, unused-parameter columns exactly 0, the residual
// column equal to f - y, and the padded rows exactly 0.
void checkDerivatives(const std::string& name, const std::shared_ptr<const Program>& prog, const Dataset& d,
                      int rows, const std::function<double(double x, double* grad)>& ref) {
  BlockEvaluator ev(prog);
  const int p = prog->nParams();
  AlignedBlock A(static_cast<std::size_t>(kBlockSize) * (p + 1));
  ev.setParams(kTheta);
  ev.evalBlock(d.columns(false), 0, rows, A.p);
  std::vector<double> f = values(ev, d, kTheta, rows);

  double worstValue = 0, worstClosed = 0, worstFd = 0;
  bool residualExact = true, paddingZero = true, unusedZero = true;
  std::vector<std::vector<double>> fdPlus(p), fdMinus(p);
  std::vector<double> h(p);
  for (int j = 0; j < p; ++j) {
    double th[kTestParams];
    std::copy(kTheta, kTheta + kTestParams, th);
    h[j] = 1e-6 * std::max(1.0, std::fabs(kTheta[j]));
    th[j] = kTheta[j] + h[j];
    fdPlus[j] = values(ev, d, th, rows);
    th[j] = kTheta[j] - h[j];
    fdMinus[j] = values(ev, d, th, rows);
  }
  for (int i = 0; i < rows; ++i) {
    double grad[kTestParams] = {0, 0, 0, 0, 0};
    const double v = ref(d.vars[0][i], grad);
    worstValue = std::max(worstValue, std::fabs(f[i] - v) / (1e-300 + std::max(1.0, std::fabs(v))));
    residualExact &= A.p[p * kBlockSize + i] == f[i] - d.y[i];
    for (int j = 0; j < p; ++j) {
      const double got = A.p[j * kBlockSize + i];
      if (!((prog->outputMask() >> j) & 1u)) {
        unusedZero &= isPositiveZero(got);
        continue;
      }
      worstClosed = std::max(worstClosed, std::fabs(got - grad[j]) / std::max(1.0, std::fabs(grad[j])));
      const double fd = (fdPlus[j][i] - fdMinus[j][i]) / (2 * h[j]);
      worstFd = std::max(worstFd, std::fabs(got - fd) / (std::max(std::fabs(got), std::fabs(fd)) + 1e-3));
    }
  }
  for (int j = 0; j <= p; ++j) {
    for (int i = rows; i < kBlockSize; ++i) paddingZero &= isPositiveZero(A.p[j * kBlockSize + i]);
  }
  check(worstValue < 1e-12, name + ": values match closed form (worst " + std::to_string(worstValue) + ")");
  check(worstClosed < 1e-10, name + ": derivatives match closed form (worst " + std::to_string(worstClosed) + ")");
  check(worstFd < 1e-6, name + ": derivatives match finite differences (worst " + std::to_string(worstFd) + ")");
  check(residualExact, name + ": residual column is exactly f - y");
  check(unusedZero, name + ": columns of unused parameters are exactly 0");
  check(paddingZero, name + ": padded rows are exactly 0");
}

void testUnaryOps() {
  const Dataset d = makeData(kBlockSize, 1, 11);
  const int unary[] = {kNeg, kExp, kLog, kLog10, kSqrt, kAbs, kSin, kCos,
                       kTan, kAsin, kAcos, kAtan, kSinh, kCosh, kTanh};
  std::vector<OperandSpec> specs = operandsA();
  for (int op : unary) {
    std::vector<OperandSpec> ops = specs;
    if (op != kLog && op != kLog10 && op != kSqrt) ops.push_back(operandSigned());
    for (const OperandSpec& a : ops) {
      ProgramBuilder b(kTestParams, 1);
      b.unary(static_cast<Op>(op), a.emit(b));
      auto ref = [&](double x, double* g) {
        double ga[kTestParams] = {0, 0, 0, 0, 0};
        double va = a.eval(x, kTheta, ga), da = 0;
        double v = refUnary(op, va, &da);
        for (int j = 0; j < kTestParams; ++j) g[j] = da * ga[j];
        return v;
      };
      checkDerivatives("unary op " + std::to_string(op) + " on " + a.name, b.build(), d, 300, ref);
    }
  }
}

void testBinaryOps() {
  const Dataset d = makeData(kBlockSize, 1, 12);
  const int binary[] = {kAdd, kSub, kMul, kDiv, kPow, kAtan2, kMin, kMax};
  for (int op : binary) {
    std::vector<OperandSpec> as = operandsA();
    std::vector<OperandSpec> bs = (op == kMin || op == kMax) ? operandsCrossing() : operandsB();
    for (const OperandSpec& a : as) {
      for (const OperandSpec& bSpec : bs) {
        ProgramBuilder b(kTestParams, 1);
        int ia = a.emit(b);
        int ib = bSpec.emit(b);
        b.binary(static_cast<Op>(op), ia, ib);
        auto ref = [&](double x, double* g) {
          double ga[kTestParams] = {0, 0, 0, 0, 0}, gb[kTestParams] = {0, 0, 0, 0, 0};
          double va = a.eval(x, kTheta, ga), vb = bSpec.eval(x, kTheta, gb), da = 0, db = 0;
          double v = refBinary(op, va, vb, &da, &db);
          for (int j = 0; j < kTestParams; ++j) g[j] = da * ga[j] + db * gb[j];
          return v;
        };
        checkDerivatives("binary op " + std::to_string(op) + " on " + a.name + ", " + bSpec.name, b.build(), d,
                         kBlockSize, ref);
      }
    }
  }
  // The same value as both operands (x*x): one register, two uses.
  ProgramBuilder b(kTestParams, 1);
  int a = operandsA()[0].emit(b);
  b.binary(kMul, a, a);
  checkDerivatives("mul with both operands the same value", b.build(), d, 200, [](double x, double* g) {
    double ga[kTestParams] = {0, 0, 0, 0, 0};
    double va = operandsA()[0].eval(x, kTheta, ga);
    for (int j = 0; j < kTestParams; ++j) g[j] = 2 * va * ga[j];
    return va * va;
  });
}

// ---- comparisons and logical operators ------------------------------------------

// The reference truth of a logical operand, written independently of the VM's.
bool refTrue(double a) { return a != 0.0 && !std::isnan(a); }

double refPiecewise(int op, double a, double b) {
  switch (op) {
    case kLt: return a < b ? 1.0 : 0.0;
    case kLe: return a <= b ? 1.0 : 0.0;
    case kGt: return a > b ? 1.0 : 0.0;
    case kGe: return a >= b ? 1.0 : 0.0;
    case kEq: return a == b ? 1.0 : 0.0;
    case kNe: return a != b ? 1.0 : 0.0;
    case kAnd: return refTrue(a) && refTrue(b) ? 1.0 : 0.0;
    case kOr: return refTrue(a) || refTrue(b) ? 1.0 : 0.0;
    case kNot: return refTrue(a) ? 0.0 : 1.0;
  }
  return NAN;
}

// Operands of the logical operators: each is false (0 or NaN) somewhere, on a
// varying, scalar or constant path, with and without parameter tangents.
std::vector<OperandSpec> operandsLogical() {
  return {
      {"(p0*x+p1) < 0.45 (varying comparison)",
       [](ProgramBuilder& b) {
         return b.binary(kLt, b.binary(kAdd, b.binary(kMul, b.param(0), b.var(0)), b.param(1)), b.constant(0.45));
       },
       [](double x, const double* t, double*) { return t[0] * x + t[1] < 0.45 ? 1.0 : 0.0; }},
      {"(x > 0.5)*(p2*x+p3) (0 or positive, with tangents)",
       [](ProgramBuilder& b) {
         int x = b.var(0);
         return b.binary(kMul, b.binary(kGt, x, b.constant(0.5)), b.binary(kAdd, b.binary(kMul, b.param(2), x), b.param(3)));
       },
       [](double x, const double* t, double*) { return x > 0.5 ? t[2] * x + t[3] : 0.0; }},
      {"sqrt(x-0.4) (NaN below 0.4)",
       [](ProgramBuilder& b) { return b.unary(kSqrt, b.binary(kSub, b.var(0), b.constant(0.4))); },
       [](double x, const double*, double*) { return std::sqrt(x - 0.4); }},
      {"p0 < p1 (scalar, false)",
       [](ProgramBuilder& b) { return b.binary(kLt, b.param(0), b.param(1)); },
       [](double, const double* t, double*) { return t[0] < t[1] ? 1.0 : 0.0; }},
      {"p2-p3 (scalar, true)",
       [](ProgramBuilder& b) { return b.binary(kSub, b.param(2), b.param(3)); },
       [](double, const double* t, double* g) { g[2] = 1; g[3] = -1; return t[2] - t[3]; }},
      {"-0 (constant)",
       [](ProgramBuilder& b) { return b.constant(-0.0); },
       [](double, const double*, double*) { return -0.0; }},
      {"NaN (constant)",
       [](ProgramBuilder& b) { return b.constant(NAN); },
       [](double, const double*, double*) { return NAN; }},
  };
}

// Values against the reference, and no tangents: the output mask is empty, so
// checkDerivatives() requires every column of A to be exactly +0.
void checkPiecewise(const std::string& name, const ProgramBuilder& b, const Dataset& d,
                    const std::function<double(double x)>& ref) {
  auto prog = b.build();
  check(prog->outputMask() == 0, name + ": output has no parameter tangents");
  checkDerivatives(name, prog, d, 300, [&](double x, double*) { return ref(x); });
}

void testPiecewiseOps() {
  const Dataset d = makeData(kBlockSize, 1, 15);
  double scratch[kTestParams];
  for (int op = kLt; op <= kNe; ++op) {
    for (const OperandSpec& a : operandsA()) {
      for (const OperandSpec& bSpec : operandsCrossing()) {
        ProgramBuilder b(kTestParams, 1);
        int ia = a.emit(b);
        b.binary(static_cast<Op>(op), ia, bSpec.emit(b));
        checkPiecewise("comparison " + std::to_string(op) + " on " + a.name + ", " + bSpec.name, b, d, [&](double x) {
          return refPiecewise(op, a.eval(x, kTheta, scratch), bSpec.eval(x, kTheta, scratch));
        });
      }
    }
  }
  const std::vector<OperandSpec> logical = operandsLogical();
  for (int op : {kAnd, kOr}) {
    for (const OperandSpec& a : logical) {
      for (const OperandSpec& bSpec : logical) {
        ProgramBuilder b(kTestParams, 1);
        int ia = a.emit(b);
        b.binary(static_cast<Op>(op), ia, bSpec.emit(b));
        checkPiecewise("logical " + std::to_string(op) + " on " + a.name + ", " + bSpec.name, b, d, [&](double x) {
          return refPiecewise(op, a.eval(x, kTheta, scratch), bSpec.eval(x, kTheta, scratch));
        });
      }
    }
  }
  for (const OperandSpec& a : logical) {
    ProgramBuilder b(kTestParams, 1);
    b.unary(kNot, a.emit(b));
    checkPiecewise(std::string("not on ") + a.name, b, d,
                   [&](double x) { return refPiecewise(kNot, a.eval(x, kTheta, scratch), 0.0); });
  }
}

// Every pair of special values, through the block loops (two data columns)
// and through the scalar prelude (two parameters): the same bits as the
// reference, so the kernel and TypeScript's constant folding can agree.
void testPiecewiseSpecialValues() {
  const double special[] = {NAN, -INFINITY, -1.0, -0.0, 0.0, 0x1p-1074, 0.5, 1.0, INFINITY};
  const int nSpecial = 9;
  std::vector<double> xs, zs;
  for (double x : special) {
    for (double z : special) {
      xs.push_back(x);
      zs.push_back(z);
    }
  }
  const int rows = static_cast<int>(xs.size());
  const double* cols[2] = {xs.data(), zs.data()};
  Columns c{cols, 2, nullptr, nullptr};
  std::vector<double> f(rows);
  for (int op = kLt; op <= kNot; ++op) {
    const bool unary = op == kNot;
    ProgramBuilder vb(0, 2);
    int x = vb.var(0);
    int z = vb.var(1);
    vb.emit(op, x, unary ? 0 : z);
    BlockEvaluator blockEv(vb.build());
    blockEv.setParams(nullptr);
    blockEv.evalValues(c, 0, rows, f.data());
    bool blockOk = true, scalarOk = true;
    for (int i = 0; i < rows; ++i) {
      const double want = refPiecewise(op, xs[i], zs[i]);
      blockOk &= sameBits(&f[i], &want, 1);
    }
    ProgramBuilder sb(2, 0);
    int p0 = sb.param(0);
    int p1 = sb.param(1);
    sb.emit(op, p0, unary ? 0 : p1);
    auto scalarProg = sb.build();
    BlockEvaluator scalarEv(scalarProg);
    for (int i = 0; i < nSpecial * nSpecial; ++i) {
      const double theta[2] = {xs[i], zs[i]};
      double v = 0;
      scalarEv.setParams(theta);
      scalarEv.evalValues(Columns{}, 0, 1, &v);
      const double want = refPiecewise(op, xs[i], zs[i]);
      scalarOk &= sameBits(&v, &want, 1);
    }
    check(blockOk, "opcode " + std::to_string(op) + ": block values on special operands (NaN, inf, -0, ...)");
    check(scalarOk, "opcode " + std::to_string(op) + ": scalar values on special operands (NaN, inf, -0, ...)");
  }
}

// Piecewise models: the tangents flowing through a product with a condition
// are exact, the condition's own parameters get exactly 0.
void testPiecewiseModels() {
  const Dataset d = makeData(kBlockSize, 1, 16);
  {
    ProgramBuilder b(kTestParams, 1);
    int x = b.var(0);
    int half = b.constant(0.5);
    b.binary(kAdd, b.binary(kMul, b.param(0), b.binary(kGt, x, half)),
             b.binary(kMul, b.param(1), b.binary(kLe, x, half)));
    checkDerivatives("p0*(x > 0.5) + p1*(x <= 0.5)", b.build(), d, kBlockSize, [](double xi, double* g) {
      g[0] = xi > 0.5;
      g[1] = xi <= 0.5;
      return xi > 0.5 ? kTheta[0] : kTheta[1];
    });
  }
  {
    // The threshold moves with p2, but the value only jumps there: d/dp2 is 0.
    ProgramBuilder b(kTestParams, 1);
    int x = b.var(0);
    int cond = b.binary(kGt, b.binary(kMul, b.param(2), x), b.constant(0.25));
    b.binary(kAdd, b.binary(kMul, b.binary(kMul, b.param(0), x), cond), b.binary(kMul, b.param(3), b.unary(kNot, cond)));
    auto prog = b.build();
    check(prog->outputMask() == 0b1001, "p0*x*(p2*x > 0.25) + p3*!(...): tangents for p0 and p3 only");
    checkDerivatives("p0*x*(p2*x > 0.25) + p3*!(p2*x > 0.25)", prog, d, 400, [](double xi, double* g) {
      const bool on = kTheta[2] * xi > 0.25;
      g[0] = on ? xi : 0.0;
      g[3] = on ? 0.0 : 1.0;
      return on ? kTheta[0] * xi : kTheta[3];
    });
  }
  {
    // min with a condition: the tangent is p0's where min takes a, else 0.
    ProgramBuilder b(kTestParams, 1);
    int x = b.var(0);
    b.binary(kMin, b.binary(kAdd, b.binary(kMul, b.param(0), x), b.param(1)), b.binary(kGt, x, b.constant(0.6)));
    checkDerivatives("min(p0*x+p1, x > 0.6)", b.build(), d, kBlockSize, [](double xi, double* g) {
      const double a = kTheta[0] * xi + kTheta[1], c = xi > 0.6 ? 1.0 : 0.0;
      g[0] = a <= c ? xi : 0.0;
      g[1] = a <= c ? 1.0 : 0.0;
      return a <= c ? a : c;
    });
  }
  {
    // Scalar conditions in the prelude select scalar branches.
    ProgramBuilder b(kTestParams, 1);
    int cond = b.binary(kLt, b.param(0), b.param(1));  // 0.3 < 0.2: false
    b.binary(kAdd, b.binary(kMul, cond, b.param(2)), b.binary(kMul, b.unary(kNot, cond), b.binary(kMul, b.param(3), b.var(0))));
    checkDerivatives("(p0 < p1)*p2 + !(p0 < p1)*p3*x", b.build(), d, kBlockSize, [](double xi, double* g) {
      g[2] = 0.0;
      g[3] = xi;
      return kTheta[3] * xi;
    });
  }
}

void testPowi() {
  const Dataset d = makeData(kBlockSize, 1, 13);
  std::vector<OperandSpec> ops = operandsA();
  ops.push_back(operandSigned());
  for (int n : {-64, -7, -3, -2, -1, 1, 2, 3, 5, 8, 13, 64}) {
    for (const OperandSpec& a : ops) {
      ProgramBuilder b(kTestParams, 1);
      b.powi(a.emit(b), n);
      auto ref = [&](double x, double* g) {
        double ga[kTestParams] = {0, 0, 0, 0, 0};
        double va = a.eval(x, kTheta, ga);
        double da = n * std::pow(va, n - 1);
        for (int j = 0; j < kTestParams; ++j) g[j] = da * ga[j];
        return std::pow(va, n);
      };
      // Near a = 0, x^n with n < 0 is too steep for finite differences (the
      // closed form still checks it).
      if (n < 0 && std::string(a.name).find("crosses") != std::string::npos) continue;
      checkDerivatives("powi " + std::to_string(n) + " on " + a.name, b.build(), d, 257, ref);
    }
  }
  // x^0 is the constant 1 with no dependence on the base, even a NaN one.
  ProgramBuilder b0(2, 1);
  b0.powi(b0.binary(kMul, b0.param(0), b0.unary(kLog, b0.var(0))), 0);
  auto prog = b0.build();
  check(prog->outputMask() == 0, "powi 0: output depends on no parameter");
  Dataset neg = makeData(64, 1, 14, -1.0, -0.5);  // log of negatives is NaN
  BlockEvaluator ev(prog);
  const double th[2] = {1.5, 2.0};
  ev.setParams(th);
  AlignedBlock A(kBlockSize * 3);
  ev.evalBlock(neg.columns(false), 0, 64, A.p);
  bool ok = true;
  for (int i = 0; i < 64; ++i) {
    ok &= isPositiveZero(A.p[i]) && isPositiveZero(A.p[kBlockSize + i]);
    ok &= A.p[2 * kBlockSize + i] == 1.0 - neg.y[i];
  }
  check(ok, "powi 0: value 1 and zero tangents even for a NaN base");
}

// Edge rules that finite differences cannot see.
void testEdgeRules() {
  auto evalOne = [](const std::shared_ptr<const Program>& prog, std::vector<double> xs, std::vector<double> th) {
    std::vector<double> y(xs.size(), 0.0);
    const double* v = xs.data();
    Columns c;
    c.vars = &v;
    c.nVars = 1;
    c.y = y.data();
    BlockEvaluator ev(prog);
    ev.setParams(th.data());
    std::vector<double> A(static_cast<std::size_t>(kBlockSize) * (prog->nParams() + 1) + 8);
    double* a = A.data();
    while (reinterpret_cast<uintptr_t>(a) % kAlign) ++a;
    ev.evalBlock(c, 0, static_cast<int>(xs.size()), a);
    return std::vector<double>(a, a + kBlockSize * (prog->nParams() + 1));
  };
  {
    // pow(p0*x, p1) at x = 0 with p1 = 2: d/dp0 = p1*(p0 x)^(p1-1)*x = 0 and
    // d/dp1 = 0 (the value is 0), not NaN from log(0).
    ProgramBuilder b(2, 1);
    b.binary(kPow, b.binary(kMul, b.param(0), b.var(0)), b.param(1));
    auto A = evalOne(b.build(), {0.0, 2.0}, {1.5, 2.0});
    check(A[0] == 0.0 && A[kBlockSize] == 0.0, "pow at base 0: both derivatives are 0, not NaN");
    check(std::fabs(A[1] - 2.0 * 3.0 * 2.0) < 1e-12, "pow: d/da = b*a^(b-1)*ta");
    check(std::fabs(A[kBlockSize + 1] - 9.0 * std::log(3.0)) < 1e-12, "pow: d/db = v*log(a)*tb");
  }
  {
    // abs at 0 has derivative 0.
    ProgramBuilder b(1, 1);
    b.unary(kAbs, b.binary(kMul, b.param(0), b.var(0)));
    auto A = evalOne(b.build(), {0.0, -2.0, 2.0}, {1.0});
    check(A[0] == 0.0 && A[1] == 2.0 && A[2] == 2.0, "abs: derivative sign(a)*ta, 0 at a = 0");
  }
  {
    // min/max ties take a: tangent of a (p0), not of b (p1).
    for (Op op : {kMin, kMax}) {
      ProgramBuilder b(2, 1);
      b.binary(op, b.binary(kMul, b.param(0), b.var(0)), b.binary(kMul, b.param(1), b.var(0)));
      auto A = evalOne(b.build(), {2.0}, {1.0, 1.0});
      check(A[0] == 2.0 && A[kBlockSize] == 0.0, std::string(op == kMin ? "min" : "max") + ": ties take a");
    }
    // NaN in either operand propagates to the value.
    ProgramBuilder b(1, 1);
    b.binary(kMin, b.var(0), b.unary(kSqrt, b.binary(kSub, b.param(0), b.var(0))));
    auto A = evalOne(b.build(), {2.0}, {1.0});
    check(std::isnan(A[kBlockSize]), "min: a NaN operand propagates (std::isnan still works)");
  }
  {
    // A scalar model broadcasts: f = b1, residual = b1 - y.
    ProgramBuilder b(2, 1);
    b.param(1);
    auto A = evalOne(b.build(), {1.0, 2.0, 3.0}, {5.0, 7.0});
    bool ok = true;
    for (int i = 0; i < 3; ++i) ok &= A[i] == 0.0 && A[kBlockSize + i] == 1.0 && A[2 * kBlockSize + i] == 7.0;
    for (int i = 3; i < kBlockSize; ++i) ok &= A[kBlockSize + i] == 0.0 && A[2 * kBlockSize + i] == 0.0;
    check(ok, "scalar output broadcasts, padded rows 0");
  }
  {
    // A model that is a data column: no parameter columns at all.
    ProgramBuilder b(1, 1);
    b.var(0);
    auto A = evalOne(b.build(), {1.0, 2.0}, {5.0});
    check(A[0] == 0.0 && A[kBlockSize] == 1.0 && A[kBlockSize + 1] == 2.0, "model = x: residual is x - y");
  }
}

// Composite models against hand-written derivatives.
void testModels() {
  const Dataset d = makeData(kBlockSize, 1, 21, 0.0, 3.0);
  {
    // a*exp(-b*x)+c
    ProgramBuilder b(3, 1);
    int a = b.param(0), bb = b.param(1), x = b.var(0), c = b.param(2);
    int e = b.unary(kExp, b.binary(kMul, b.unary(kNeg, bb), x));
    b.binary(kAdd, b.binary(kMul, a, e), c);
    const double th[3] = {2.0, 0.7, -0.3};
    BlockEvaluator ev(b.build());
    ev.setParams(th);
    AlignedBlock A(kBlockSize * 4);
    ev.evalBlock(d.columns(true), 0, kBlockSize, A.p);
    double worst = 0;
    for (int i = 0; i < kBlockSize; ++i) {
      double xi = d.vars[0][i], w = 1 / d.sigma[i], ex = std::exp(-th[1] * xi);
      double want[4] = {w * ex, w * (-th[0] * xi * ex), w, w * (th[0] * ex + th[2] - d.y[i])};
      for (int j = 0; j < 4; ++j) {
        worst = std::max(worst, std::fabs(A.p[j * kBlockSize + i] - want[j]) / std::max(1.0, std::fabs(want[j])));
      }
    }
    check(worst < 1e-14, "a*exp(-b*x)+c with sigma matches closed form (worst " + std::to_string(worst) + ")");
  }
  {
    // A long chain reusing registers: ((x*p0+p1)*p0+p1)... 2000 times, with
    // 64 parameters in every tangent. Without liveness it would need 2000 *
    // 65 blocks (over 1 GiB); it must verify and run.
    ProgramBuilder b(64, 1);
    int s = b.param(0);
    for (int j = 1; j < 64; ++j) s = b.binary(kAdd, s, b.param(j));
    int v = b.binary(kMul, b.var(0), s);
    int c = b.constant(1e-3);
    for (int k = 0; k < 2000; ++k) v = b.unary(kSin, b.binary(kAdd, v, c));
    auto prog = b.build();
    check(prog->outputMask() == ~uint64_t{0}, "long chain: output depends on all 64 parameters");
    BlockEvaluator ev(prog);
    std::vector<double> th(64, 0.01);
    ev.setParams(th.data());
    AlignedBlock A(static_cast<std::size_t>(kBlockSize) * 65);
    ev.evalBlock(d.columns(false), 0, 100, A.p);
    bool same = true;
    for (int j = 1; j < 64; ++j) same &= sameBits(A.p, A.p + j * kBlockSize, kBlockSize);
    check(same, "long chain: symmetric parameters give identical columns");
  }
}

void testMasksPaddingAndWeights() {
  // b1*exp(-b2*x) + b4 with b3 (index 2) unused.
  ProgramBuilder b(4, 1);
  int e = b.unary(kExp, b.binary(kMul, b.unary(kNeg, b.param(1)), b.var(0)));
  b.binary(kAdd, b.binary(kMul, b.param(0), e), b.param(3));
  auto prog = b.build();
  check(prog->outputMask() == 0b1011, "outputMask is {b1, b2, b4}");
  const double th[4] = {1.5, 0.4, 123.0, 0.1};
  Dataset d = makeData(3 * kBlockSize, 1, 31, -1.0, 4.0);
  // The last valid row of the partial block would give Inf if padding were
  // computed as zeros weighted by something; it must still give exact 0.
  d.vars[0][kBlockSize + 99] = -2000.0;  // exp(800) overflows to inf
  BlockEvaluator ev(prog);
  ev.setParams(th);
  AlignedBlock A(kBlockSize * 5);
  for (int rows : {1, 7, 100, 511}) {
    ev.evalBlock(d.columns(true), kBlockSize, rows, A.p);
    bool unused = true, padded = true;
    for (int i = 0; i < kBlockSize; ++i) unused &= isPositiveZero(A.p[2 * kBlockSize + i]);
    for (int j = 0; j < 5; ++j) {
      for (int i = rows; i < kBlockSize; ++i) padded &= isPositiveZero(A.p[j * kBlockSize + i]);
    }
    check(unused, "unused parameter column is exactly 0 (rows = " + std::to_string(rows) + ")");
    check(padded, "padded rows are exactly 0 (rows = " + std::to_string(rows) + ")");
  }
  ev.evalBlock(d.columns(true), kBlockSize, 100, A.p);
  check(std::isinf(A.p[99]) && std::isinf(A.p[4 * kBlockSize + 99]), "non-finite values are written as they are");

  // Sigma weighting: every weighted entry is exactly (1/sigma_i) * unweighted.
  AlignedBlock W(kBlockSize * 5);
  ev.evalBlock(d.columns(false), 0, kBlockSize, A.p);
  ev.evalBlock(d.columns(true), 0, kBlockSize, W.p);
  bool weighted = true;
  for (int j = 0; j < 5; ++j) {
    for (int i = 0; i < kBlockSize; ++i) {
      const double expected = (1.0 / d.sigma[i]) * A.p[j * kBlockSize + i];
      weighted &= sameBits(&W.p[j * kBlockSize + i], &expected, 1);
    }
  }
  check(weighted, "sigma weighting: rows are scaled by exactly 1/sigma");

  // rows = 0: all zero, no data read.
  ev.evalBlock(Columns{d.varPtrs.data(), 1, d.y.data(), nullptr}, 3 * kBlockSize, 0, A.p);
  bool zero = true;
  for (std::size_t i = 0; i < A.size; ++i) zero &= isPositiveZero(A.p[i]);
  check(zero, "rows = 0 gives an all-zero block");
}

void testDeterminism() {
  // Gauss1-like model with sigma; the same rows copied at every 8-byte
  // misalignment must give bitwise identical blocks, in any block order.
  ProgramBuilder b(8, 1);
  int x = b.var(0);
  int t1 = b.binary(kMul, b.param(0), b.unary(kExp, b.binary(kMul, b.unary(kNeg, b.param(1)), x)));
  auto gauss = [&](int amp, int mu, int width) {
    int q = b.unary(kNeg, b.powi(b.binary(kSub, x, b.param(mu)), 2));
    return b.binary(kMul, b.param(amp), b.unary(kExp, b.binary(kDiv, q, b.powi(b.param(width), 2))));
  };
  int t2 = gauss(2, 3, 4);
  int t3 = gauss(5, 6, 7);
  b.binary(kAdd, b.binary(kAdd, t1, t2), t3);
  auto prog = b.build();
  const double th[8] = {97.0, 0.009, 100.0, 65.0, 20.0, 70.0, 178.0, 16.5};
  const int n = 3 * kBlockSize + 77;
  Dataset d = makeData(n, 1, 41, 1.0, 250.0);

  BlockEvaluator ev(prog);
  ev.setParams(th);
  const std::size_t blockDoubles = static_cast<std::size_t>(kBlockSize) * 9;
  std::vector<std::vector<double>> reference;
  AlignedBlock A(blockDoubles);
  for (int64_t blk = 0; blk < blockCount(n); ++blk) {
    int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - blk * kBlockSize));
    ev.evalBlock(d.columns(true), blk * kBlockSize, rows, A.p);
    reference.emplace_back(A.p, A.p + blockDoubles);
  }
  bool identical = true;
  for (int shift = 1; shift < 8; ++shift) {
    std::vector<double> xs(n + shift), ys(n + shift), ss(n + shift);
    std::copy(d.vars[0].begin(), d.vars[0].end(), xs.begin() + shift);
    std::copy(d.y.begin(), d.y.end(), ys.begin() + shift);
    std::copy(d.sigma.begin(), d.sigma.end(), ss.begin() + shift);
    const double* xp = xs.data() + shift;
    Columns c{&xp, 1, ys.data() + shift, ss.data() + shift};
    BlockEvaluator other(prog);
    other.setParams(th);
    for (int64_t blk = blockCount(n) - 1; blk >= 0; --blk) {  // reverse order
      int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - blk * kBlockSize));
      other.evalBlock(c, blk * kBlockSize, rows, A.p);
      identical &= sameBits(A.p, reference[blk].data(), blockDoubles);
    }
  }
  check(identical, "blocks from differently aligned copies, in any order, are bitwise identical");

  // evalValues agrees bitwise with the residual column (f - y with no sigma).
  std::vector<double> f(n);
  for (int64_t blk = 0; blk < blockCount(n); ++blk) {
    int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - blk * kBlockSize));
    ev.evalValues(d.columns(false), blk * kBlockSize, rows, f.data() + blk * kBlockSize);
  }
  bool agree = true;
  for (int64_t blk = 0; blk < blockCount(n); ++blk) {
    int rows = static_cast<int>(std::min<int64_t>(kBlockSize, n - blk * kBlockSize));
    ev.evalBlock(d.columns(false), blk * kBlockSize, rows, A.p);
    for (int i = 0; i < rows; ++i) agree &= A.p[8 * kBlockSize + i] == f[blk * kBlockSize + i] - d.y[blk * kBlockSize + i];
  }
  check(agree, "evalValues matches the residual column of evalBlock");
}

// ---- differential test against a naive interpreter ---------------------------
// Random well-formed programs (values kept in safe domains), evaluated by the
// VM and by a dense forward-mode interpreter written as plainly as possible.
// This exercises what the plan decides on its own: uniform and view slots,
// chains of views, register reuse while views into a register are alive.

struct DenseValue {
  double v;
  double d[8];
};

DenseValue denseOp(int op, int n, const DenseValue& a, const DenseValue& b, int p) {
  DenseValue r{0, {0, 0, 0, 0, 0, 0, 0, 0}};
  auto chain = [&](double da, double db) {
    for (int j = 0; j < p; ++j) r.d[j] = da * a.d[j] + db * b.d[j];
  };
  switch (op) {
    case kAdd: r.v = a.v + b.v; chain(1, 1); break;
    case kSub: r.v = a.v - b.v; chain(1, -1); break;
    case kMul: r.v = a.v * b.v; chain(b.v, a.v); break;
    case kDiv: r.v = a.v / b.v; chain(1 / b.v, -a.v / (b.v * b.v)); break;
    case kPow: r.v = std::pow(a.v, b.v); chain(b.v * std::pow(a.v, b.v - 1), r.v * std::log(a.v)); break;
    case kAtan2: {
      const double q = a.v * a.v + b.v * b.v;
      r.v = std::atan2(a.v, b.v);
      chain(b.v / q, -a.v / q);
      break;
    }
    case kMin:
    case kMax: {
      const bool takeA = op == kMin ? (a.v <= b.v || a.v != a.v) : (a.v >= b.v || a.v != a.v);
      r = takeA ? a : b;
      break;
    }
    case kLt:
    case kLe:
    case kGt:
    case kGe:
    case kEq:
    case kNe:
    case kAnd:
    case kOr:
    case kNot:
      r.v = refPiecewise(op, a.v, b.v);  // tangents stay 0
      break;
    default: {
      double v = 0, dv = 0;
      if (op == kPowi) {
        v = std::pow(a.v, n);
        dv = n * std::pow(a.v, n - 1);
      } else {
        v = refUnary(op, a.v, &dv);
      }
      r.v = v;
      chain(dv, 0);
      break;
    }
  }
  return r;
}

struct RandomProgram {
  ProgramBuilder builder;
  std::vector<int32_t> ops, as, bs;
  std::vector<double> consts;
};

// Emits instructions into both the builder and a list the interpreter reads.
class RandomProgramMaker {
 public:
  RandomProgramMaker(uint64_t& s, int nParams, int nVars) : s_(s), p_(nParams), v_(nVars), b_(nParams, nVars) {}
  int emit(int op, int a = 0, int bArg = 0, double c = 0) {
    ops_.push_back(op);
    as_.push_back(a);
    bs_.push_back(bArg);
    cs_.push_back(c);
    if (op == kConst) return b_.constant(c);
    return b_.emit(op, a, bArg);
  }
  int pick() {
    const int n = static_cast<int>(ops_.size());
    if (splitmix(s_) % 2) return n - 1 - static_cast<int>(splitmix(s_) % std::min(n, 4));
    return static_cast<int>(splitmix(s_) % n);
  }
  // Keeps magnitudes bounded so the comparison is about the VM, not overflow.
  int squash(int a) {
    const int ops[] = {kTanh, kSin, kAtan, kCos};
    return emit(ops[splitmix(s_) % 4], a);
  }
  void maybeSquash(int a) {
    if (splitmix(s_) % 2) squash(a);
  }
  int positive(int a) {  // 1 + tanh(a)^2, in [1, 2]
    return emit(kAdd, emit(kConst, 0, 0, 1.0), emit(kPowi, emit(kTanh, a), 2));
  }
  void grow() {
    switch (splitmix(s_) % 18) {
      case 0: emit(kParam, static_cast<int>(splitmix(s_) % p_)); break;
      case 1: emit(kVar, static_cast<int>(splitmix(s_) % v_)); break;
      case 2: emit(kConst, 0, 0, uniform(s_) * 2 - 1); break;
      case 3: maybeSquash(emit(kAdd, pick(), pick())); break;
      case 4: maybeSquash(emit(kSub, pick(), pick())); break;
      case 5: squash(emit(kMul, pick(), pick())); break;
      case 6: emit(splitmix(s_) % 2 ? kMin : kMax, pick(), pick()); break;
      case 7: emit(kNeg, pick()); break;
      case 8: squash(pick()); break;
      case 9: emit(kExp, emit(kTanh, pick())); break;
      case 10: emit(kDiv, pick(), positive(pick())); break;
      case 11: emit(kLog, positive(pick())); break;
      case 12: emit(kSqrt, positive(pick())); break;
      case 13: emit(kPowi, emit(kTanh, pick()), static_cast<int>(splitmix(s_) % 9) - 4 == 0 ? 3 : 2); break;
      case 14: emit(kPow, positive(pick()), emit(kTanh, pick())); break;
      // A condition times a value, so tangents flow past conditions.
      case 15: emit(kMul, pick(), emit(kLt + static_cast<int>(splitmix(s_) % 6), pick(), pick())); break;
      case 16: {
        const int op = kAnd + static_cast<int>(splitmix(s_) % 3);
        emit(op, pick(), op == kNot ? 0 : pick());
        break;
      }
      default: emit(kAtan2, pick(), positive(pick())); break;
    }
  }
  std::shared_ptr<const Program> build() const { return b_.build(); }
  DenseValue interpret(int i, const std::vector<DenseValue>& vals, const double* theta,
                       const std::vector<double>& x) const {
    DenseValue r{0, {0, 0, 0, 0, 0, 0, 0, 0}};
    switch (ops_[i]) {
      case kConst: r.v = cs_[i]; return r;
      case kParam: r.v = theta[as_[i]]; r.d[as_[i]] = 1; return r;
      case kVar: r.v = x[as_[i]]; return r;
      default: break;
    }
    const DenseValue& a = vals[as_[i]];
    const bool binary = isBinaryOpcode(ops_[i]);
    return denseOp(ops_[i], bs_[i], a, binary ? vals[bs_[i]] : a, p_);
  }
  int size() const { return static_cast<int>(ops_.size()); }

 private:
  uint64_t& s_;
  int p_, v_;
  ProgramBuilder b_;
  std::vector<int32_t> ops_, as_, bs_;
  std::vector<double> cs_;
};

void testAgainstInterpreter() {
  uint64_t s = 0xD1FFull;
  int compared = 0, skipped = 0;
  double worst = 0;
  std::string worstName;
  for (int iter = 0; iter < 1500; ++iter) {
    const int nParams = 1 + static_cast<int>(splitmix(s) % 8);
    const int nVars = 1 + static_cast<int>(splitmix(s) % 2);
    RandomProgramMaker maker(s, nParams, nVars);
    maker.emit(kVar, 0);
    maker.emit(kParam, 0);
    const int length = 3 + static_cast<int>(splitmix(s) % 40);
    while (maker.size() < length) maker.grow();
    maker.emit(kAdd, maker.pick(), maker.pick());
    auto prog = maker.build();

    const int rows = 1 + static_cast<int>(splitmix(s) % kBlockSize);
    Dataset d = makeData(rows, nVars, splitmix(s), -2.0, 2.0);
    std::vector<double> theta(nParams);
    for (double& t : theta) t = uniform(s) * 2 - 1;
    BlockEvaluator ev(prog);
    ev.setParams(theta.data());
    AlignedBlock A(static_cast<std::size_t>(kBlockSize) * (nParams + 1));
    ev.evalBlock(d.columns(false), 0, rows, A.p);

    std::vector<DenseValue> vals(maker.size());
    for (int i = 0; i < rows; ++i) {
      std::vector<double> x(nVars);
      for (int v = 0; v < nVars; ++v) x[v] = d.vars[v][i];
      for (int k = 0; k < maker.size(); ++k) vals[k] = maker.interpret(k, vals, theta.data(), x);
      // libmvec and libm may differ by an ulp or two; a program that blows
      // such differences up (sin of 1e6) says nothing about the VM.
      double largest = 0;
      for (const DenseValue& v : vals) largest = std::max(largest, std::fabs(v.v));
      if (!(largest < 1e3)) {
        ++skipped;
        continue;
      }
      const DenseValue& out = vals.back();
      auto compare = [&](double got, double want, const std::string& what) {
        const double err = std::fabs(got - want) / (1.0 + std::fabs(want));
        if (!(err <= worst)) {
          worst = err;
          worstName = "program " + std::to_string(iter) + " row " + std::to_string(i) + " " + what;
        }
      };
      compare(A.p[nParams * kBlockSize + i], out.v - d.y[i], "residual");
      for (int j = 0; j < nParams; ++j) compare(A.p[j * kBlockSize + i], out.d[j], "column " + std::to_string(j));
    }
    ++compared;
  }
  check(worst < 1e-10, "VM matches a dense reference interpreter on " + std::to_string(compared) +
                           " random programs (worst " + std::to_string(worst) + " at " + worstName + ")");
  check(skipped < compared * 10, "interpreter comparison skips few rows as ill-conditioned (" +
                                     std::to_string(skipped) + ")");
}

// A view into a register whose owner value is dead must keep that register
// from being reused while the view is alive.
void testViewsKeepRegistersAlive() {
  ProgramBuilder b(3, 1);
  int x = b.var(0);
  int e = b.unary(kExp, b.binary(kMul, b.param(0), x));  // own slot for p0
  int h = b.binary(kMul, b.param(1), e);                  // views: e (for p1), e's slot (for p0)
  // e is dead now; these allocate registers of the same size as e's.
  int sum = h;
  for (int k = 0; k < 6; ++k) {
    int t = b.unary(k % 2 ? kSin : kCos, b.binary(kMul, b.param(2), b.binary(kAdd, x, b.constant(k))));
    sum = b.binary(kAdd, sum, t);
  }
  auto prog = b.build();
  const Dataset d = makeData(kBlockSize, 1, 61);
  checkDerivatives("views keep dead owners' registers", prog, d, kBlockSize, [](double xi, double* g) {
    const double p0 = kTheta[0], p1 = kTheta[1], p2 = kTheta[2];
    const double ex = std::exp(p0 * xi);
    double v = p1 * ex;
    g[0] = p1 * xi * ex;
    g[1] = ex;
    g[2] = 0;
    for (int k = 0; k < 6; ++k) {
      const double u = p2 * (xi + k);
      v += k % 2 ? std::sin(u) : std::cos(u);
      g[2] += (k % 2 ? std::cos(u) : -std::sin(u)) * (xi + k);
    }
    return v;
  });
}

// ---- verifier -----------------------------------------------------------------

void expectRejected(const std::string& name, std::vector<int32_t> code, std::vector<double> consts,
                    const std::string& message, int64_t nConsts = -1) {
  try {
    Program::verify(code.data(), static_cast<int64_t>(code.size()), consts.data(),
                    nConsts >= 0 ? nConsts : static_cast<int64_t>(consts.size()));
    check(false, name + ": expected ProgramError \"" + message + "\", verify succeeded");
  } catch (const ProgramError& e) {
    check(std::string(e.what()) == message, name + ": message \"" + e.what() + "\" != \"" + message + "\"");
  }
}

void testVerifier() {
  ProgramBuilder good(2, 1);
  int p0 = good.param(0);
  int x0 = good.var(0);
  good.binary(kMul, p0, x0);
  const std::vector<int32_t> base = good.code();  // 3 instructions
  auto with = [&](int word, int32_t value) {
    std::vector<int32_t> c = base;
    c[word] = value;
    return c;
  };
  auto instrWord = [](int i, int field) { return kHeaderWords + i * kInstrWords + field; };

  expectRejected("short", {kMagic, kVersion}, {}, "program has 2 words, fewer than the 6-word header");
  expectRejected("magic", with(0, 0x12345678), {}, "bad magic 0x12345678 (expected 0x4E4C4631)");
  expectRejected("version", with(1, 1), {}, "unsupported bytecode version 1 (expected 2)");
  expectRejected("version 3", with(1, 3), {}, "unsupported bytecode version 3 (expected 2)");
  expectRejected("nInstr 0", with(2, 0), {}, "nInstr = 0 is out of range [1, 65536]");
  expectRejected("nInstr big", with(2, kMaxInstr + 1), {}, "nInstr = 65537 is out of range [1, 65536]");
  expectRejected("nParams", with(3, 65), {}, "nParams = 65 is out of range [0, 64]");
  expectRejected("nParams negative", with(3, -1), {}, "nParams = -1 is out of range [0, 64]");
  expectRejected("nVars", with(4, 257), {}, "nVars = 257 is out of range [0, 256]");
  expectRejected("nConsts negative", with(5, -3), {}, "nConsts = -3 is negative");
  expectRejected("length", with(2, 4), {}, "program has 15 words but its header describes 18 (6 + 3 * nInstr 4)");
  expectRejected("nConsts mismatch", base, {}, "header says nConsts = 0 but 2 constants were given", 2);
  expectRejected("opcode", with(instrWord(1, 0), 36), {}, "instruction 1: opcode 36 is out of range [0, 35]");
  expectRejected("opcode negative", with(instrWord(0, 0), -1), {}, "instruction 0: opcode -1 is out of range [0, 35]");
  expectRejected("param index", with(instrWord(0, 1), 2), {},
                 "instruction 0 (param): parameter index a = 2 is out of range [0, 2)");
  expectRejected("var index", with(instrWord(1, 1), -1), {},
                 "instruction 1 (var): variable index a = -1 is out of range [0, 1)");
  {
    std::vector<int32_t> c = with(instrWord(0, 0), kConst);
    expectRejected("const index", c, {}, "instruction 0 (const): constant index a = 0 is out of range [0, 0)");
  }
  expectRejected("load b", with(instrWord(1, 2), 4), {}, "instruction 1 (var): unused operand b = 4 must be 0");
  expectRejected("binary forward ref", with(instrWord(2, 2), 2), {},
                 "instruction 2 (mul): operand b = 2 does not refer to an earlier instruction");
  expectRejected("binary negative ref", with(instrWord(2, 1), -5), {},
                 "instruction 2 (mul): operand a = -5 does not refer to an earlier instruction");
  {
    ProgramBuilder b(1, 1);
    b.param(0);
    b.emit(kExp, 0, 1);
    expectRejected("unary b", b.code(), {}, "instruction 1 (exp): unused operand b = 1 must be 0");
  }
  {
    ProgramBuilder b(1, 1);
    b.param(0);
    b.emit(kSqrt, 5);
    expectRejected("unary ref", b.code(), {}, "instruction 1 (sqrt): operand a = 5 does not refer to an earlier instruction");
  }
  // Comparisons and logical operators are checked like every binary and unary opcode.
  {
    std::vector<int32_t> c = with(instrWord(2, 0), kLe);
    c[instrWord(2, 2)] = 2;
    expectRejected("comparison self ref", c, {}, "instruction 2 (le): operand b = 2 does not refer to an earlier instruction");
    c = with(instrWord(2, 0), kOr);
    c[instrWord(2, 1)] = -1;
    expectRejected("logical negative ref", c, {}, "instruction 2 (or): operand a = -1 does not refer to an earlier instruction");
    c = with(instrWord(2, 0), kNot);
    expectRejected("not b", c, {}, "instruction 2 (not): unused operand b = 1 must be 0");
    c[instrWord(2, 2)] = 0;
    c[instrWord(2, 1)] = 7;
    expectRejected("not ref", c, {}, "instruction 2 (not): operand a = 7 does not refer to an earlier instruction");
    const char* names[] = {"lt", "le", "gt", "ge", "eq", "ne", "and", "or"};
    for (int op = kLt; op <= kOr; ++op) {
      c = with(instrWord(2, 0), op);
      c[instrWord(2, 2)] = 5;
      expectRejected("binary range", c, {},
                     std::string("instruction 2 (") + names[op - kLt] + "): operand b = 5 does not refer to an earlier instruction");
    }
  }

  for (int n : {65, -65, std::numeric_limits<int32_t>::min()}) {
    ProgramBuilder b(1, 1);
    b.param(0);
    b.powi(0, n);
    expectRejected("powi exponent", b.code(), {},
                   "instruction 1 (powi): exponent b = " + std::to_string(n) + " is out of range [-64, 64]");
  }
  {
    ProgramBuilder b(1, 1);
    b.emit(kPowi, 0, 2);
    expectRejected("first instruction refers to itself", b.code(), {},
                   "instruction 0 (powi): operand a = 0 does not refer to an earlier instruction");
  }
  {
    // Verifying the original must still work, and the message example from the brief.
    ProgramBuilder b(2, 1);
    for (int i = 0; i < 7; ++i) b.param(0);
    b.emit(kMul, 3, 9);
    expectRejected("brief example", b.code(), {},
                   "instruction 7 (mul): operand b = 9 does not refer to an earlier instruction");
  }
  {
    const std::vector<int32_t> c = base;
    bool ok = true;
    try {
      Program::verify(nullptr, 0, nullptr, 0);
      ok = false;
    } catch (const ProgramError&) {
    }
    try {
      Program::verify(c.data(), static_cast<int64_t>(c.size()), nullptr, 0);
    } catch (const ProgramError&) {
      ok = false;
    }
    check(ok, "null code is rejected; null constants with nConsts = 0 are fine");
  }
  {
    // Too many wide values live at once (300 values with 64 computed
    // tangents each): rejected, not gigabytes of scratch.
    ProgramBuilder b(64, 1);
    int s = b.param(0);
    for (int j = 1; j < 64; ++j) s = b.binary(kAdd, s, b.param(j));
    int v = b.binary(kMul, b.var(0), s);
    std::vector<int> live;
    for (int k = 0; k < 300; ++k) live.push_back(b.unary(kSin, b.binary(kAdd, v, b.constant(k))));
    int sum = live[0];
    for (int k = 1; k < 300; ++k) sum = b.binary(kAdd, sum, live[k]);
    bool rejected = false;
    try {
      b.build();
    } catch (const ProgramError& e) {
      rejected = std::string(e.what()).find("MiB of evaluation scratch") != std::string::npos;
    }
    check(rejected, "a program needing more than the scratch limit is rejected");
  }
}

void testEvaluatorArguments() {
  ProgramBuilder b(1, 2);
  b.binary(kMul, b.param(0), b.var(1));
  auto prog = b.build();
  Dataset d = makeData(10, 2, 51);
  AlignedBlock A(kBlockSize * 2);
  BlockEvaluator ev(prog);
  auto throws = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::exception&) {
      return true;
    }
    return false;
  };
  check(throws([&] { ev.evalBlock(d.columns(false), 0, 10, A.p); }), "evalBlock before setParams throws");
  const double th[1] = {2.0};
  ev.setParams(th);
  check(throws([&] { ev.evalBlock(d.columns(false), 0, kBlockSize + 1, A.p); }), "rows > kBlockSize throws");
  check(throws([&] { ev.evalBlock(d.columns(false), 0, -1, A.p); }), "rows < 0 throws");
  check(throws([&] { ev.evalBlock(d.columns(false), -1, 5, A.p); }), "first < 0 throws");
  check(throws([&] { ev.evalBlock(d.columns(false), 0, 5, A.p + 1); }), "misaligned A throws");
  Columns one = d.columns(false);
  one.nVars = 1;
  check(throws([&] { ev.evalBlock(one, 0, 5, A.p); }), "too few columns throws");
  Columns noY = d.columns(false);
  noY.y = nullptr;
  check(throws([&] { ev.evalBlock(noY, 0, 5, A.p); }), "missing y throws");
  std::vector<double> f(10);
  check(!throws([&] { ev.evalValues(noY, 0, 10, f.data()); }) && f[3] == 2.0 * d.vars[1][3],
        "evalValues needs no y");
}

// ---- fuzzing --------------------------------------------------------------------

// A hostile 32-bit word: anything, or just outside a valid range.
int32_t hostileWord(uint64_t& s, int32_t limit) {
  switch (splitmix(s) % 4) {
    case 0: return static_cast<int32_t>(splitmix(s));
    case 1: return -1 - static_cast<int32_t>(splitmix(s) % 3);
    case 2: return limit + static_cast<int32_t>(splitmix(s) % 3);
    default: return std::numeric_limits<int32_t>::min();
  }
}

// Mostly well-formed instructions (so many programs verify and run) with a
// few hostile words.
void fuzzInstruction(uint64_t& s, int i, int nParams, int nVars, int nConsts, std::vector<int32_t>& code) {
  int32_t op = static_cast<int32_t>(splitmix(s) % kOpCount);
  if (i == 0 || splitmix(s) % 3 == 0) op = static_cast<int32_t>(splitmix(s) % 3);
  const int32_t limit = op == kConst ? nConsts : op == kParam ? nParams : op == kVar ? nVars : i;
  auto pick = [&](int32_t n) { return n > 0 ? static_cast<int32_t>(splitmix(s) % static_cast<uint64_t>(n)) : 0; };
  int32_t a = pick(limit);
  int32_t b = isBinaryOpcode(op) ? pick(i) : op == kPowi ? static_cast<int32_t>(splitmix(s) % 17) - 8 : 0;
  if (splitmix(s) % 32 == 0) {
    switch (splitmix(s) % 4) {
      case 0: op = hostileWord(s, kOpCount); break;
      case 1: a = hostileWord(s, limit); break;
      case 2: b = hostileWord(s, op == kPowi ? kMaxPowi + 1 : i); break;
      default: op = static_cast<int32_t>(splitmix(s) % kOpCount); break;
    }
  }
  code.insert(code.end(), {op, a, b});
}

void testFuzz() {
  uint64_t s = 0x5EED5EEDull;
  const double special[] = {0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 1e-310, INFINITY, -INFINITY, NAN, 0.5, 2.0};
  int verified = 0, rejected = 0, evaluated = 0;
  bool unexpected = false;
  for (int iter = 0; iter < 200000; ++iter) {
    const int nInstr = 1 + static_cast<int>(splitmix(s) % 12);
    const int nParams = static_cast<int>(splitmix(s) % 5);
    const int nVars = static_cast<int>(splitmix(s) % 3);
    const int nConsts = static_cast<int>(splitmix(s) % 3);
    std::vector<int32_t> code = {kMagic, kVersion, nInstr, nParams, nVars, nConsts};
    for (int i = 0; i < nInstr; ++i) fuzzInstruction(s, i, nParams, nVars, nConsts, code);
    if (splitmix(s) % 40 == 0) {
      const int field = static_cast<int>(splitmix(s) % 6);
      code[field] = hostileWord(s, code[field]);
    }
    int64_t nCode = static_cast<int64_t>(code.size());
    if (splitmix(s) % 40 == 0) nCode -= static_cast<int64_t>(splitmix(s) % 4);
    std::vector<double> consts(nConsts);
    for (double& c : consts) c = special[splitmix(s) % 12];
    std::shared_ptr<const Program> prog;
    try {
      prog = Program::verify(code.data(), nCode, consts.data(), nConsts);
      ++verified;
    } catch (const ProgramError&) {
      ++rejected;
      continue;
    } catch (...) {
      unexpected = true;
      continue;
    }
    // The header may have been corrupted into another valid program: size
    // everything from what verify() accepted. Columns of exactly first + rows doubles, so any overread trips ASan.
    const int rows = static_cast<int>(splitmix(s) % (kBlockSize + 1));
    const int64_t first = static_cast<int64_t>(splitmix(s) % 3);
    std::vector<std::unique_ptr<double[]>> cols;
    std::vector<const double*> ptrs;
    for (int v = 0; v < prog->nVars(); ++v) {
      cols.emplace_back(new double[first + rows]);
      for (int64_t i = 0; i < first + rows; ++i) cols.back()[i] = special[splitmix(s) % 12] * uniform(s);
      ptrs.push_back(cols.back().get());
    }
    std::unique_ptr<double[]> y(new double[first + rows]), sigma(new double[first + rows]);
    for (int64_t i = 0; i < first + rows; ++i) {
      y[i] = uniform(s);
      sigma[i] = special[splitmix(s) % 12];
    }
    std::vector<double> theta(prog->nParams());
    for (double& t : theta) t = special[splitmix(s) % 12] * uniform(s);
    BlockEvaluator ev(prog);
    ev.setParams(theta.data());
    AlignedBlock A(static_cast<std::size_t>(kBlockSize) * (prog->nParams() + 1));
    Columns c{ptrs.data(), prog->nVars(), y.get(), splitmix(s) % 2 ? sigma.get() : nullptr};
    ev.evalBlock(c, first, rows, A.p);
    std::unique_ptr<double[]> f(new double[rows + 1]);
    ev.evalValues(c, first, rows, f.get());
    bool zeros = true;
    for (int j = 0; j <= prog->nParams(); ++j) {
      for (int i = rows; i < kBlockSize; ++i) zeros &= isPositiveZero(A.p[j * kBlockSize + i]);
      if (!((prog->outputMask() >> j) & 1u) && j < prog->nParams()) {
        for (int i = 0; i < kBlockSize; ++i) zeros &= isPositiveZero(A.p[j * kBlockSize + i]);
      }
    }
    if (!zeros) {
      unexpected = true;
      std::printf("fuzz %d: padding or unused column not zero\n", iter);
    }
    ++evaluated;
  }
  std::printf("fuzz: %d programs verified, %d rejected, %d evaluated\n", verified, rejected, evaluated);
  check(!unexpected, "fuzz: every program is rejected with ProgramError or evaluates cleanly");
  check(verified > 5000 && rejected > 5000,
        "fuzz explores both sides (" + std::to_string(verified) + " verified, " + std::to_string(rejected) +
            " rejected, " + std::to_string(evaluated) + " evaluated)");
}

}  // namespace

int main() {
  testVerifier();
  testEvaluatorArguments();
  testUnaryOps();
  testBinaryOps();
  testPiecewiseOps();
  testPiecewiseSpecialValues();
  testPiecewiseModels();
  testPowi();
  testEdgeRules();
  testModels();
  testViewsKeepRegistersAlive();
  testAgainstInterpreter();
  testMasksPaddingAndWeights();
  testDeterminism();
  testFuzz();
  return report();
}
