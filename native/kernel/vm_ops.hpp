// Per-point kernels of the model VM (program.cpp) and the differentiation
// rules it shares with the scalar prelude.
//
// Every loop here runs over one whole block: kBlockSize is a compile-time
// constant and every buffer is 64-byte aligned scratch, so GCC vectorises the
// loop with no peeled prologue and no scalar epilogue. That is a determinism
// requirement, not only a speed one: libmvec's vector exp and glibc's scalar
// exp may differ in the last bit, so a point must never switch between them
// depending on where it sits in a block.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "bytecode.hpp"
#include "layout.hpp"

// glibc's libmvec has vector variants of these (for example _ZGVeN8v_exp on
// AVX-512). Declaring them `simd` lets GCC call them from `omp simd` loops
// without -ffast-math, which would also fold std::isnan to false. They are
// resolved through -lm (libm.so pulls libmvec in as needed).
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 22)
extern "C" {
double exp(double) noexcept __attribute__((simd("notinbranch")));
double log(double) noexcept __attribute__((simd("notinbranch")));
double pow(double, double) noexcept __attribute__((simd("notinbranch")));
double sin(double) noexcept __attribute__((simd("notinbranch")));
double cos(double) noexcept __attribute__((simd("notinbranch")));
}
#endif
#if __GLIBC_PREREQ(2, 35)
extern "C" {
double log10(double) noexcept __attribute__((simd("notinbranch")));
double tan(double) noexcept __attribute__((simd("notinbranch")));
double asin(double) noexcept __attribute__((simd("notinbranch")));
double acos(double) noexcept __attribute__((simd("notinbranch")));
double atan(double) noexcept __attribute__((simd("notinbranch")));
double atan2(double, double) noexcept __attribute__((simd("notinbranch")));
double sinh(double) noexcept __attribute__((simd("notinbranch")));
double cosh(double) noexcept __attribute__((simd("notinbranch")));
double tanh(double) noexcept __attribute__((simd("notinbranch")));
}
#endif
#endif

namespace nlfit {
namespace vm {

constexpr double kLn10 = 2.302585092994045684017991454684364208;

inline double* aligned(double* p) {
  return static_cast<double*>(__builtin_assume_aligned(p, kAlign));
}
inline const double* aligned(const double* p) {
  return static_cast<const double*>(__builtin_assume_aligned(p, kAlign));
}

// An operand of a loop is a block (pointer) or a scalar broadcast to it.
inline const double* prep(const double* p) { return aligned(p); }
inline double prep(double v) { return v; }
inline double at(const double* p, int i) { return p[i]; }
inline double at(double v, int) { return v; }

// ---- differentiation rules ----------------------------------------------
// One definition for the scalar prelude and the block loops, so a rule cannot
// drift between the two.

// Left-to-right binary powering: for a given n the sequence of products is
// fixed, so x^n has the same bits wherever it is computed.
inline double powi(double a, int n) {
  unsigned m = n < 0 ? static_cast<unsigned>(-n) : static_cast<unsigned>(n);
  if (m == 0) return 1.0;
  int top = 31 - __builtin_clz(m);
  double r = a;
  for (int bit = top - 1; bit >= 0; --bit) {
    r = r * r;
    if ((m >> bit) & 1u) r = r * a;
  }
  return n < 0 ? 1.0 / r : r;
}

// NaN in either operand propagates (the caller must see it); ties take a.
inline bool minTakesA(double a, double b) { return a <= b || a != a; }
inline bool maxTakesA(double a, double b) { return a >= b || a != a; }

template <int Op>
inline double unaryValue(double a) {
  if constexpr (Op == kNeg) return -a;
  else if constexpr (Op == kExp) return exp(a);
  else if constexpr (Op == kLog) return log(a);
  else if constexpr (Op == kLog10) return log10(a);
  else if constexpr (Op == kSqrt) return std::sqrt(a);
  else if constexpr (Op == kAbs) return std::fabs(a);
  else if constexpr (Op == kSin) return sin(a);
  else if constexpr (Op == kCos) return cos(a);
  else if constexpr (Op == kTan) return tan(a);
  else if constexpr (Op == kAsin) return asin(a);
  else if constexpr (Op == kAcos) return acos(a);
  else if constexpr (Op == kAtan) return atan(a);
  else if constexpr (Op == kSinh) return sinh(a);
  else if constexpr (Op == kCosh) return cosh(a);
  else {
    static_assert(Op == kTanh, "not a unary opcode");
    return tanh(a);
  }
}

// d unaryValue<Op>(a) / da, given v = unaryValue<Op>(a).
template <int Op>
inline double unaryDerivative(double a, double v) {
  if constexpr (Op == kNeg) return -1.0;
  else if constexpr (Op == kExp) return v;
  else if constexpr (Op == kLog) return 1.0 / a;
  else if constexpr (Op == kLog10) return 1.0 / (a * kLn10);
  else if constexpr (Op == kSqrt) return 0.5 / v;
  else if constexpr (Op == kAbs) return a > 0.0 ? 1.0 : (a < 0.0 ? -1.0 : 0.0);
  else if constexpr (Op == kSin) return cos(a);
  else if constexpr (Op == kCos) return -sin(a);
  else if constexpr (Op == kTan) return 1.0 + v * v;
  // (1-a)(1+a) rather than 1-a^2: no cancellation as |a| -> 1.
  else if constexpr (Op == kAsin) return 1.0 / std::sqrt((1.0 - a) * (1.0 + a));
  else if constexpr (Op == kAcos) return -1.0 / std::sqrt((1.0 - a) * (1.0 + a));
  else if constexpr (Op == kAtan) return 1.0 / (1.0 + a * a);
  else if constexpr (Op == kSinh) return cosh(a);
  else if constexpr (Op == kCosh) return sinh(a);
  else {
    static_assert(Op == kTanh, "not a unary opcode");
    return (1.0 - v) * (1.0 + v);
  }
}

// n * a^(n-1); n == 0 never reaches here (x^0 is the constant 1).
inline double powiDerivative(double a, int n) {
  return n == 1 ? 1.0 : static_cast<double>(n) * powi(a, n - 1);
}

template <int Op>
inline double binaryValue(double a, double b) {
  if constexpr (Op == kAdd) return a + b;
  else if constexpr (Op == kSub) return a - b;
  else if constexpr (Op == kMul) return a * b;
  else if constexpr (Op == kDiv) return a / b;
  else if constexpr (Op == kPow) return pow(a, b);
  else if constexpr (Op == kAtan2) return atan2(a, b);
  else if constexpr (Op == kMin) return minTakesA(a, b) ? a : b;
  else {
    static_assert(Op == kMax, "not a binary opcode");
    return maxTakesA(a, b) ? a : b;
  }
}

// Partial derivatives of binaryValue<Op> in a and b, given its value v.
// Min and max are not here: their tangent selects, it does not scale.
template <int Op>
inline double binaryDa(double a, double b, double v) {
  (void)a, (void)v;
  if constexpr (Op == kAdd || Op == kSub) return 1.0;
  else if constexpr (Op == kMul) return b;
  else if constexpr (Op == kDiv) return 1.0 / b;
  // b*a^(b-1), not v*b/a: finite at a = 0.
  else if constexpr (Op == kPow) return b * pow(a, b - 1.0);
  else {
    static_assert(Op == kAtan2, "no scaling rule for this opcode");
    return b / (a * a + b * b);
  }
}

template <int Op>
inline double binaryDb(double a, double b, double v) {
  (void)b;
  if constexpr (Op == kAdd) return 1.0;
  else if constexpr (Op == kSub) return -1.0;
  else if constexpr (Op == kMul) return a;
  else if constexpr (Op == kDiv) return -v / b;
  // Where a^b is 0 (a = 0, b > 0) the b-derivative is 0, although log(0) is not.
  else if constexpr (Op == kPow) return v == 0.0 ? 0.0 : v * log(a);
  else {
    static_assert(Op == kAtan2, "no scaling rule for this opcode");
    return -a / (a * a + b * b);
  }
}

// Calls f(std::integral_constant<int, op>) so one generic lambda can run any
// opcode's rule with the opcode known at compile time inside the loop.
template <class F>
inline void withUnaryOp(int op, F&& f) {
  switch (op) {
    case kNeg: f(std::integral_constant<int, kNeg>{}); break;
    case kExp: f(std::integral_constant<int, kExp>{}); break;
    case kLog: f(std::integral_constant<int, kLog>{}); break;
    case kLog10: f(std::integral_constant<int, kLog10>{}); break;
    case kSqrt: f(std::integral_constant<int, kSqrt>{}); break;
    case kAbs: f(std::integral_constant<int, kAbs>{}); break;
    case kSin: f(std::integral_constant<int, kSin>{}); break;
    case kCos: f(std::integral_constant<int, kCos>{}); break;
    case kTan: f(std::integral_constant<int, kTan>{}); break;
    case kAsin: f(std::integral_constant<int, kAsin>{}); break;
    case kAcos: f(std::integral_constant<int, kAcos>{}); break;
    case kAtan: f(std::integral_constant<int, kAtan>{}); break;
    case kSinh: f(std::integral_constant<int, kSinh>{}); break;
    case kCosh: f(std::integral_constant<int, kCosh>{}); break;
    case kTanh: f(std::integral_constant<int, kTanh>{}); break;
    default: break;
  }
}

template <class F>
inline void withBinaryOp(int op, F&& f) {
  switch (op) {
    case kAdd: f(std::integral_constant<int, kAdd>{}); break;
    case kSub: f(std::integral_constant<int, kSub>{}); break;
    case kMul: f(std::integral_constant<int, kMul>{}); break;
    case kDiv: f(std::integral_constant<int, kDiv>{}); break;
    case kPow: f(std::integral_constant<int, kPow>{}); break;
    case kAtan2: f(std::integral_constant<int, kAtan2>{}); break;
    case kMin: f(std::integral_constant<int, kMin>{}); break;
    case kMax: f(std::integral_constant<int, kMax>{}); break;
    default: break;
  }
}

// ---- block loops ----------------------------------------------------------

template <class A, class Fn>
inline void map1(double* out, A a, Fn fn) {
  double* o = aligned(out);
  auto pa = prep(a);
#pragma omp simd
  for (int i = 0; i < kBlockSize; ++i) o[i] = fn(at(pa, i));
}

template <class A, class B, class Fn>
inline void map2(double* out, A a, B b, Fn fn) {
  double* o = aligned(out);
  auto pa = prep(a);
  auto pb = prep(b);
#pragma omp simd
  for (int i = 0; i < kBlockSize; ++i) o[i] = fn(at(pa, i), at(pb, i));
}

template <class A, class B, class C, class Fn>
inline void map3(double* out, A a, B b, C c, Fn fn) {
  double* o = aligned(out);
  auto pa = prep(a);
  auto pb = prep(b);
  auto pc = prep(c);
#pragma omp simd
  for (int i = 0; i < kBlockSize; ++i) o[i] = fn(at(pa, i), at(pb, i), at(pc, i));
}

inline void fill(double* out, double v) {
  map1(out, v, [](double x) { return x; });
}

// out = a^n over a block, by the same product sequence as powi().
inline void powiBlock(double* out, const double* a, int n) {
  unsigned m = n < 0 ? static_cast<unsigned>(-n) : static_cast<unsigned>(n);
  if (m == 0) {
    fill(out, 1.0);
    return;
  }
  int top = 31 - __builtin_clz(m);
  if (top == 0) {
    map1(out, a, [](double x) { return x; });
  } else {
    map1(out, a, [](double x) { return x * x; });
    if ((m >> (top - 1)) & 1u) map2(out, out, a, [](double r, double x) { return r * x; });
    for (int bit = top - 2; bit >= 0; --bit) {
      map1(out, out, [](double r) { return r * r; });
      if ((m >> bit) & 1u) map2(out, out, a, [](double r, double x) { return r * x; });
    }
  }
  if (n < 0) map1(out, out, [](double r) { return 1.0 / r; });
}

// ---- tangent slots ----------------------------------------------------------
// A result tangent for one parameter is da*ta + db*tb, where a term is absent
// (not a zero) when its operand does not depend on that parameter. Each term
// is reduced at plan level to one of a few shapes so the point loop does only
// the arithmetic that is really there.

enum class TermKind : uint8_t { kNone, kConst, kVec, kScaled, kProd };

struct Term {
  TermKind kind = TermKind::kNone;
  double c = 0.0;             // kConst value; kScaled factor
  const double* p = nullptr;  // kVec, kScaled, kProd
  const double* q = nullptr;  // kProd
};

// How a partial derivative scales a tangent: exactly 1 or -1, a scalar, or a
// block of per-point values.
enum class FactorKind : uint8_t { kOne, kMinusOne, kScalar, kBlock };

struct Factor {
  FactorKind kind = FactorKind::kOne;
  double s = 0.0;
  const double* p = nullptr;
};

inline Term scaledScalar(const Factor& f, double t) {
  switch (f.kind) {
    case FactorKind::kOne: return {TermKind::kConst, t, nullptr, nullptr};
    case FactorKind::kMinusOne: return {TermKind::kConst, -t, nullptr, nullptr};
    case FactorKind::kScalar: return {TermKind::kConst, f.s * t, nullptr, nullptr};
    case FactorKind::kBlock: return {TermKind::kScaled, t, f.p, nullptr};
  }
  return {};
}

inline Term scaledBlock(const Factor& f, const double* t) {
  switch (f.kind) {
    case FactorKind::kOne: return {TermKind::kVec, 0.0, t, nullptr};
    case FactorKind::kMinusOne: return {TermKind::kScaled, -1.0, t, nullptr};
    case FactorKind::kScalar: return {TermKind::kScaled, f.s, t, nullptr};
    case FactorKind::kBlock: return {TermKind::kProd, 0.0, f.p, t};
  }
  return {};
}

struct NoTerm {};
struct ConstTerm { double c; };
struct VecTerm { const double* p; };
struct ScaledTerm { double s; const double* p; };
struct ProdTerm { const double* p; const double* q; };

inline NoTerm prep(NoTerm t) { return t; }
inline ConstTerm prep(ConstTerm t) { return t; }
inline VecTerm prep(VecTerm t) { return {aligned(t.p)}; }
inline ScaledTerm prep(ScaledTerm t) { return {t.s, aligned(t.p)}; }
inline ProdTerm prep(ProdTerm t) { return {aligned(t.p), aligned(t.q)}; }
inline double at(ConstTerm t, int) { return t.c; }
inline double at(VecTerm t, int i) { return t.p[i]; }
inline double at(ScaledTerm t, int i) { return t.s * t.p[i]; }
inline double at(ProdTerm t, int i) { return t.p[i] * t.q[i]; }

template <class A, class B>
inline void sumLoop(double* out, A a, B b) {
  double* o = aligned(out);
  auto ta = prep(a);
  auto tb = prep(b);
#pragma omp simd
  for (int i = 0; i < kBlockSize; ++i) {
    if constexpr (std::is_same_v<B, NoTerm>) {
      o[i] = at(ta, i);
    } else {
      o[i] = at(ta, i) + at(tb, i);
    }
  }
}

template <class F>
inline void withTerm(const Term& t, F&& f) {
  switch (t.kind) {
    case TermKind::kNone: f(NoTerm{}); break;
    case TermKind::kConst: f(ConstTerm{t.c}); break;
    case TermKind::kVec: f(VecTerm{t.p}); break;
    case TermKind::kScaled: f(ScaledTerm{t.c, t.p}); break;
    case TermKind::kProd: f(ProdTerm{t.p, t.q}); break;
  }
}

// out = a + b; at least one term is present. IEEE addition commutes exactly,
// so putting the present term first changes no bits.
inline void sumTerms(double* out, Term a, Term b) {
  if (a.kind == TermKind::kNone) std::swap(a, b);
  withTerm(a, [&](auto ta) {
    if constexpr (!std::is_same_v<decltype(ta), NoTerm>) {
      withTerm(b, [&](auto tb) { sumLoop(out, ta, tb); });
    }
  });
}

// Min/max tangents: out = chooseA ? ta : tb, where each side is a constant
// (0 when that operand lacks the parameter) or a block.
template <class A, class B>
inline void selectLoop(double* out, const double* chooseA, A a, B b) {
  double* o = aligned(out);
  const double* c = aligned(chooseA);
  auto ta = prep(a);
  auto tb = prep(b);
#pragma omp simd
  for (int i = 0; i < kBlockSize; ++i) o[i] = c[i] != 0.0 ? at(ta, i) : at(tb, i);
}

inline void selectTerms(double* out, const double* chooseA, const Term& a, const Term& b) {
  auto side = [](const Term& t, auto&& f) {
    if (t.kind == TermKind::kVec) f(VecTerm{t.p});
    else f(ConstTerm{t.kind == TermKind::kConst ? t.c : 0.0});
  };
  side(a, [&](auto ta) { side(b, [&](auto tb) { selectLoop(out, chooseA, ta, tb); }); });
}

// ---- writing A -----------------------------------------------------------------
// Rows at and beyond `rows` are padding: they are written as exactly 0 by a
// select inside the full-block loop, never by a shorter loop.

struct Unweighted {};
inline Unweighted prep(Unweighted w) { return w; }
inline double weigh(Unweighted, int, double x) { return x; }
inline double weigh(const double* w, int i, double x) { return w[i] * x; }

template <class W, class S>
inline void writeTangentColumn(double* out, int rows, W w, S src) {
  double* o = aligned(out);
  auto pw = prep(w);
  auto ps = prep(src);
#pragma omp simd
  for (int i = 0; i < kBlockSize; ++i) o[i] = i < rows ? weigh(pw, i, at(ps, i)) : 0.0;
}

template <class W, class F>
inline void writeResidualColumn(double* out, int rows, W w, F f, const double* y) {
  double* o = aligned(out);
  auto pw = prep(w);
  auto pf = prep(f);
  const double* py = aligned(y);
#pragma omp simd
  for (int i = 0; i < kBlockSize; ++i) o[i] = i < rows ? weigh(pw, i, at(pf, i) - py[i]) : 0.0;
}

}  // namespace vm
}  // namespace nlfit
