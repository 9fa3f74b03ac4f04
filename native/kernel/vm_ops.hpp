// The block loops and kernels of the model VM (program.cpp), and the
// differentiation rules they share with its scalar prelude.
//
// Every loop here runs over one whole block: its width (kBlockSize, or a
// narrow width for small curves, see kBlockWidths in layout.hpp) is a
// compile-time template argument, a multiple of 32, and every buffer is
// 64-byte aligned scratch, so GCC vectorises the loop with no peeled prologue
// and no scalar epilogue. That is a determinism requirement, not only a speed
// one: libmvec's vector exp and glibc's scalar exp may differ in the last
// bit, so a point must never switch between them depending on where it sits
// in a block. Every loop is elementwise, so a point gets the same bits in a
// block of any width. (The only unaligned input is the caller's y, read by
// exact subtraction alone.)
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

// Comparisons and logical operators: values 1.0 or 0.0, no tangents.
constexpr bool isPiecewiseConstant(int op) { return op >= kLt && op <= kNot; }

// The truth of an operand of kAnd, kOr and kNot: nonzero and not NaN. Both
// comparisons are false for 0, -0 and NaN. Bitwise | and & (here and in the
// callers) keep the block loops free of branches.
inline bool isTrue(double a) { return (a < 0.0) | (a > 0.0); }
inline double truth(bool t) { return t ? 1.0 : 0.0; }

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
  else if constexpr (Op == kNot) return truth(!isTrue(a));
  else {
    static_assert(Op == kTanh, "not a unary opcode");
    return tanh(a);
  }
}

// d unaryValue<Op>(a) / da, given v = unaryValue<Op>(a). (kNot has no rule:
// piecewise-constant values never have tangents.)
template <int Op>
inline double unaryDerivative(double a, double v) {
  static_assert(!isPiecewiseConstant(Op), "piecewise-constant opcodes have no tangents");
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
  else if constexpr (Op == kMax) return maxTakesA(a, b) ? a : b;
  else if constexpr (Op == kLt) return truth(a < b);
  else if constexpr (Op == kLe) return truth(a <= b);
  else if constexpr (Op == kGt) return truth(a > b);
  else if constexpr (Op == kGe) return truth(a >= b);
  else if constexpr (Op == kEq) return truth(a == b);
  else if constexpr (Op == kNe) return truth(a != b);
  else if constexpr (Op == kAnd) return truth(isTrue(a) & isTrue(b));
  else {
    static_assert(Op == kOr, "not a binary opcode");
    return truth(isTrue(a) | isTrue(b));
  }
}

// Partial derivatives of binaryValue<Op> in a and b, given its value v.
// Min and max are not here: their tangent selects, it does not scale; nor are
// the piecewise-constant opcodes, which have no tangents.
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
    case kNot: f(std::integral_constant<int, kNot>{}); break;
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
    case kLt: f(std::integral_constant<int, kLt>{}); break;
    case kLe: f(std::integral_constant<int, kLe>{}); break;
    case kGt: f(std::integral_constant<int, kGt>{}); break;
    case kGe: f(std::integral_constant<int, kGe>{}); break;
    case kEq: f(std::integral_constant<int, kEq>{}); break;
    case kNe: f(std::integral_constant<int, kNe>{}); break;
    case kAnd: f(std::integral_constant<int, kAnd>{}); break;
    case kOr: f(std::integral_constant<int, kOr>{}); break;
    default: break;
  }
}

// ---- block loops ----------------------------------------------------------

template <int Width, class A, class Fn>
inline void map1(double* out, A a, Fn fn) {
  double* o = aligned(out);
  auto pa = prep(a);
#pragma omp simd
  for (int i = 0; i < Width; ++i) o[i] = fn(at(pa, i));
}

template <int Width, class A, class B, class Fn>
inline void map2(double* out, A a, B b, Fn fn) {
  double* o = aligned(out);
  auto pa = prep(a);
  auto pb = prep(b);
#pragma omp simd
  for (int i = 0; i < Width; ++i) o[i] = fn(at(pa, i), at(pb, i));
}

template <int Width, class A, class B, class C, class Fn>
inline void map3(double* out, A a, B b, C c, Fn fn) {
  double* o = aligned(out);
  auto pa = prep(a);
  auto pb = prep(b);
  auto pc = prep(c);
#pragma omp simd
  for (int i = 0; i < Width; ++i) o[i] = fn(at(pa, i), at(pb, i), at(pc, i));
}

template <int Width>
inline void fill(double* out, double v) {
  map1<Width>(out, v, [](double x) { return x; });
}

// out = a^n over a block, by the same product sequence as powi().
template <int Width>
inline void powiBlock(double* out, const double* a, int n) {
  unsigned m = n < 0 ? static_cast<unsigned>(-n) : static_cast<unsigned>(n);
  if (m == 0) {
    fill<Width>(out, 1.0);
    return;
  }
  int top = 31 - __builtin_clz(m);
  if (top == 0) {
    map1<Width>(out, a, [](double x) { return x; });
  } else {
    map1<Width>(out, a, [](double x) { return x * x; });
    if ((m >> (top - 1)) & 1u) map2<Width>(out, out, a, [](double r, double x) { return r * x; });
    for (int bit = top - 2; bit >= 0; --bit) {
      map1<Width>(out, out, [](double r) { return r * r; });
      if ((m >> bit) & 1u) map2<Width>(out, out, a, [](double r, double x) { return r * x; });
    }
  }
  if (n < 0) map1<Width>(out, out, [](double r) { return 1.0 / r; });
}

// ---- tangent terms ------------------------------------------------------------
// A result tangent for one parameter is da*ta + db*tb, where a term is absent
// (not a zero: 0 * inf would be NaN) when its operand does not depend on that
// parameter. Every operand tangent is a constant or a scalar times a block,
// and every partial derivative a constant or a scalar times a block, so each
// present term has one of three shapes, fixed when setParams() compiles the
// plan: c, s*p[i] or (s*p[i])*q[i].

enum class TermKind : uint8_t { kNone, kConst, kScaled, kScaledProd };

struct NoTerm {};
struct ConstTerm { double c; };
struct ScaledTerm { double s; const double* p; };
struct ScaledProdTerm { double s; const double* p; const double* q; };

inline NoTerm prep(NoTerm t) { return t; }
inline ConstTerm prep(ConstTerm t) { return t; }
inline ScaledTerm prep(ScaledTerm t) { return {t.s, aligned(t.p)}; }
inline ScaledProdTerm prep(ScaledProdTerm t) { return {t.s, aligned(t.p), aligned(t.q)}; }
inline double at(ConstTerm t, int) { return t.c; }
inline double at(ScaledTerm t, int i) { return t.s * t.p[i]; }
inline double at(ScaledProdTerm t, int i) { return (t.s * t.p[i]) * t.q[i]; }

// Where a loop stores: a register block, or a column of A. A column takes the
// row weights, and rows at and beyond `rows` (padding) are written as exactly
// 0 by a select inside the full-block loop, never by a shorter one.
struct ToBlock {
  double* o;
};
struct Unweighted {};
template <class W>
struct ToColumn {
  double* o;
  int rows;
  W w;
};

inline ToBlock prep(ToBlock s) { return {aligned(s.o)}; }
inline Unweighted prep(Unweighted w) { return w; }
template <class W>
inline ToColumn<W> prep(ToColumn<W> s) { return {aligned(s.o), s.rows, prep(s.w)}; }
inline double weigh(Unweighted, int, double x) { return x; }
inline double weigh(const double* w, int i, double x) { return w[i] * x; }
inline void put(ToBlock s, int i, double v) { s.o[i] = v; }
template <class W>
inline void put(ToColumn<W> s, int i, double v) { s.o[i] = i < s.rows ? weigh(s.w, i, v) : 0.0; }

template <int Width, class S, class A, class B>
inline void sumLoop(S store, A a, B b) {
  auto o = prep(store);
  auto ta = prep(a);
  auto tb = prep(b);
#pragma omp simd
  for (int i = 0; i < Width; ++i) {
    if constexpr (std::is_same_v<B, NoTerm>) {
      put(o, i, at(ta, i));
    } else {
      put(o, i, at(ta, i) + at(tb, i));
    }
  }
}

// Min/max tangents: chooseA ? ta : tb, each side a constant (0 when that
// operand lacks the parameter) or a scaled block.
template <int Width, class S, class A, class B>
inline void selectLoop(S store, const double* chooseA, A a, B b) {
  auto o = prep(store);
  const double* c = aligned(chooseA);
  auto ta = prep(a);
  auto tb = prep(b);
#pragma omp simd
  for (int i = 0; i < Width; ++i) put(o, i, c[i] != 0.0 ? at(ta, i) : at(tb, i));
}

// The residual column w * (f - y). y may be the caller's own (unaligned)
// column: the subtraction is exact IEEE arithmetic, so alignment cannot
// change a bit.
template <int Width, class S, class F>
inline void residualLoop(S store, F f, const double* y) {
  auto o = prep(store);
  auto pf = prep(f);
#pragma omp simd
  for (int i = 0; i < Width; ++i) put(o, i, at(pf, i) - y[i]);
}

// ---- kernels ----------------------------------------------------------------------
// setParams() compiles the plan into a flat list of kernels, each one loop
// over a block with its pointers and scalar coefficients bound, so a block is
// run by calling them in order: no per-block decisions at all.

struct BlockContext {
  double* A;              // evalBlock's output
  int rows;               // valid rows of this block
  const double* weights;  // 1/sigma for the block, or null
  const double* y;        // a block's width of readable values of y
};

struct Kernel {
  using Fn = void (*)(const Kernel&, const BlockContext&);
  Fn run[2] = {nullptr, nullptr};  // [0] without sigma, [1] with (differ only for columns of A)
  double* out = nullptr;           // destination block, unless the kernel writes a column of A
  const double* p[4] = {nullptr, nullptr, nullptr, nullptr};
  double c[2] = {0.0, 0.0};
  int32_t column = 0;  // column of A
  int32_t n = 0;       // integer exponent
};

// Operand i of a value kernel: a block in p[i] or a scalar in c[i].
template <bool IsBlock>
inline auto operand(const Kernel& k, int i) {
  if constexpr (IsBlock) return k.p[i];
  else return k.c[i];
}

template <int Width, int Op>
void unaryValueKernel(const Kernel& k, const BlockContext&) {
  map1<Width>(k.out, k.p[0], [](double x) { return unaryValue<Op>(x); });
}

template <int Width, int Op, bool ABlock, bool BBlock>
void binaryValueKernel(const Kernel& k, const BlockContext&) {
  map2<Width>(k.out, operand<ABlock>(k, 0), operand<BBlock>(k, 1), [](double x, double y) { return binaryValue<Op>(x, y); });
}

template <int Width>
void powiKernel(const Kernel& k, const BlockContext&) { powiBlock<Width>(k.out, k.p[0], k.n); }

// out = d unary/da from a (p[0]) and the value (p[1]).
template <int Width, int Op>
void unaryDerivativeKernel(const Kernel& k, const BlockContext&) {
  map2<Width>(k.out, k.p[0], k.p[1], [](double x, double v) { return unaryDerivative<Op>(x, v); });
}

// out = d a/b / da = 1/b, for a block b in p[0].
template <int Width>
void divDaKernel(const Kernel& k, const BlockContext&) {
  map1<Width>(k.out, k.p[0], [](double y) { return binaryDa<kDiv>(0.0, y, 0.0); });
}

// out = d a/b / db = -v/b, from the value (p[0]) and a block b (p[1]).
template <int Width>
void divDbKernel(const Kernel& k, const BlockContext&) {
  map2<Width>(k.out, k.p[0], k.p[1], [](double v, double y) { return binaryDb<kDiv>(0.0, y, v); });
}

// out = d op(a, b) / d a (or / d b) from a, b and the value (p[2]).
template <int Width, int Op, bool ForB, bool ABlock, bool BBlock>
void binaryPartialKernel(const Kernel& k, const BlockContext&) {
  map3<Width>(k.out, operand<ABlock>(k, 0), operand<BBlock>(k, 1), k.p[2], [](double x, double y, double v) {
    if constexpr (ForB) return binaryDb<Op>(x, y, v);
    else return binaryDa<Op>(x, y, v);
  });
}

// out = 1 where min/max takes a, else 0.
template <int Width, int Op, bool ABlock, bool BBlock>
void choiceKernel(const Kernel& k, const BlockContext&) {
  map2<Width>(k.out, operand<ABlock>(k, 0), operand<BBlock>(k, 1), [](double x, double y) {
    return (Op == kMin ? minTakesA(x, y) : maxTakesA(x, y)) ? 1.0 : 0.0;
  });
}

template <int Width, class S>
inline S storeOf(const Kernel& k, const BlockContext& ctx) {
  if constexpr (std::is_same_v<S, ToBlock>) return ToBlock{k.out};
  else if constexpr (std::is_same_v<S, ToColumn<Unweighted>>) return S{ctx.A + k.column * Width, ctx.rows, {}};
  else return S{ctx.A + k.column * Width, ctx.rows, ctx.weights};
}

// Term a is packed in c[0], p[0], p[1]; term b in c[1], p[2], p[3].
template <class T>
inline T unpackTerm(double c, const double* p, const double* q) {
  if constexpr (std::is_same_v<T, NoTerm>) return NoTerm{};
  else if constexpr (std::is_same_v<T, ConstTerm>) return ConstTerm{c};
  else if constexpr (std::is_same_v<T, ScaledTerm>) return ScaledTerm{c, p};
  else return ScaledProdTerm{c, p, q};
}

template <int Width, class S, class A, class B>
void sumKernel(const Kernel& k, const BlockContext& ctx) {
  sumLoop<Width>(storeOf<Width, S>(k, ctx), unpackTerm<A>(k.c[0], k.p[0], k.p[1]), unpackTerm<B>(k.c[1], k.p[2], k.p[3]));
}

// Select kernels keep the choice block in p[1] (their terms never use q).
template <int Width, class S, class A, class B>
void selectKernel(const Kernel& k, const BlockContext& ctx) {
  selectLoop<Width>(storeOf<Width, S>(k, ctx), k.p[1], unpackTerm<A>(k.c[0], k.p[0], nullptr),
             unpackTerm<B>(k.c[1], k.p[2], nullptr));
}

template <int Width, class S, bool FBlock>
void residualKernel(const Kernel& k, const BlockContext& ctx) {
  residualLoop<Width>(storeOf<Width, S>(k, ctx), operand<FBlock>(k, 0), ctx.y);
}

// The residual of an output a+b or a-b, computed without storing the value:
// nothing in evalBlock reads it. Not a*b: GCC would contract a*b - y into an
// FMA, and the residual would no longer be exactly f - y for the f that
// evalValues returns.
template <int Width, int Op, bool ABlock, bool BBlock, class S>
void binaryResidualKernel(const Kernel& k, const BlockContext& ctx) {
  auto o = prep(storeOf<Width, S>(k, ctx));
  auto pa = prep(operand<ABlock>(k, 0));
  auto pb = prep(operand<BBlock>(k, 1));
  const double* y = ctx.y;
#pragma omp simd
  for (int i = 0; i < Width; ++i) put(o, i, binaryValue<Op>(at(pa, i), at(pb, i)) - y[i]);
}

template <int Width>
void zeroColumnKernel(const Kernel& k, const BlockContext& ctx) {
  fill<Width>(ctx.A + k.column * Width, 0.0);
}

// ---- choosing a kernel ----------------------------------------------------------

template <class F>
inline auto withTermType(TermKind kind, F&& f) {
  switch (kind) {
    case TermKind::kConst: return f(ConstTerm{});
    case TermKind::kScaled: return f(ScaledTerm{});
    case TermKind::kScaledProd: return f(ScaledProdTerm{});
    case TermKind::kNone: break;
  }
  return f(NoTerm{});
}

template <class F>
inline auto withOperandKinds(bool aBlock, bool bBlock, F&& f) {
  if (aBlock && bBlock) return f(std::true_type{}, std::true_type{});
  if (aBlock) return f(std::true_type{}, std::false_type{});
  return f(std::false_type{}, std::true_type{});
}

// Packs a + b (a present) into k and sets its loop for store type S.
template <int Width, class S>
inline Kernel::Fn sumKernelFor(TermKind a, TermKind b) {
  return withTermType(a, [&](auto ta) {
    return withTermType(b, [&](auto tb) -> Kernel::Fn {
      if constexpr (std::is_same_v<decltype(ta), NoTerm>) return nullptr;
      else return &sumKernel<Width, S, decltype(ta), decltype(tb)>;
    });
  });
}

template <int Width, class S>
inline Kernel::Fn selectKernelFor(TermKind a, TermKind b) {
  auto side = [](TermKind k) { return k == TermKind::kScaled; };
  if (side(a) && side(b)) return &selectKernel<Width, S, ScaledTerm, ScaledTerm>;
  if (side(a)) return &selectKernel<Width, S, ScaledTerm, ConstTerm>;
  if (side(b)) return &selectKernel<Width, S, ConstTerm, ScaledTerm>;
  return &selectKernel<Width, S, ConstTerm, ConstTerm>;
}

template <int Width>
inline Kernel::Fn unaryValueKernelFor(int op) {
  Kernel::Fn fn = nullptr;
  withUnaryOp(op, [&](auto tag) { fn = &unaryValueKernel<Width, decltype(tag)::value>; });
  return fn;
}

template <int Width>
inline Kernel::Fn unaryDerivativeKernelFor(int op) {
  Kernel::Fn fn = nullptr;
  withUnaryOp(op, [&](auto tag) {
    constexpr int Op = decltype(tag)::value;
    if constexpr (!isPiecewiseConstant(Op)) fn = &unaryDerivativeKernel<Width, Op>;
  });
  return fn;
}

template <int Width>
inline Kernel::Fn binaryValueKernelFor(int op, bool aBlock, bool bBlock) {
  Kernel::Fn fn = nullptr;
  withBinaryOp(op, [&](auto tag) {
    withOperandKinds(aBlock, bBlock, [&](auto ab, auto bb) {
      fn = &binaryValueKernel<Width, decltype(tag)::value, decltype(ab)::value, decltype(bb)::value>;
    });
  });
  return fn;
}

// [0] without sigma, [1] with.
template <int Width>
inline std::pair<Kernel::Fn, Kernel::Fn> binaryResidualKernelFor(int op, bool aBlock, bool bBlock) {
  std::pair<Kernel::Fn, Kernel::Fn> fns{nullptr, nullptr};
  withBinaryOp(op, [&](auto tag) {
    constexpr int Op = decltype(tag)::value;
    if constexpr (Op == kAdd || Op == kSub) {
      withOperandKinds(aBlock, bBlock, [&](auto ab, auto bb) {
        constexpr bool A = decltype(ab)::value, B = decltype(bb)::value;
        fns = {&binaryResidualKernel<Width, Op, A, B, ToColumn<Unweighted>>,
               &binaryResidualKernel<Width, Op, A, B, ToColumn<const double*>>};
      });
    }
  });
  return fns;
}

template <int Width>
inline Kernel::Fn binaryPartialKernelFor(int op, bool forB, bool aBlock, bool bBlock) {
  Kernel::Fn fn = nullptr;
  withOperandKinds(aBlock, bBlock, [&](auto ab, auto bb) {
    constexpr bool A = decltype(ab)::value, B = decltype(bb)::value;
    if (op == kPow) fn = forB ? &binaryPartialKernel<Width, kPow, true, A, B> : &binaryPartialKernel<Width, kPow, false, A, B>;
    if (op == kAtan2) fn = forB ? &binaryPartialKernel<Width, kAtan2, true, A, B> : &binaryPartialKernel<Width, kAtan2, false, A, B>;
  });
  return fn;
}

template <int Width>
inline Kernel::Fn choiceKernelFor(int op, bool aBlock, bool bBlock) {
  return withOperandKinds(aBlock, bBlock, [&](auto ab, auto bb) -> Kernel::Fn {
    constexpr bool A = decltype(ab)::value, B = decltype(bb)::value;
    return op == kMin ? &choiceKernel<Width, kMin, A, B> : &choiceKernel<Width, kMax, A, B>;
  });
}

}  // namespace vm
}  // namespace nlfit
