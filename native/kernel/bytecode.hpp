// The model bytecode: the one contract between the TypeScript compiler
// (src/model/bytecode.ts mirrors every number here) and the C++ VM.
//
// A program is an Int32Array in static single assignment form:
//
//   header (kHeaderWords int32):
//     [0] kMagic   [1] kVersion   [2] nInstr   [3] nParams   [4] nVars   [5] nConsts
//   then nInstr instructions of kInstrWords int32 each: [op, a, b]
//
// Instruction i defines value i. Its operands are:
//   kConst  a = index into the constants (Float64Array, nConsts long)   b = 0
//   kParam  a = parameter index in [0, nParams)                         b = 0
//   kVar    a = variable (data column) index in [0, nVars)              b = 0
//   unary   a = index of an earlier instruction (a < i)                 b = 0
//   binary  a, b = indices of earlier instructions (< i)
// (binary: kAdd..kMax and kLt..kOr; unary: kNeg..kTanh and kNot)
//   kPowi   a = earlier instruction, b = integer exponent in [-kMaxPowi, kMaxPowi]
// The model value is the value of the last instruction.
//
// Nothing in a program is trusted: verify() in program.hpp checks every field
// before anything is evaluated.
#pragma once
#include <cstdint>

namespace nlfit {

constexpr int32_t kMagic = 0x4E4C4631;  // "NLF1"
constexpr int32_t kVersion = 2;  // 2: comparisons and logical operators
constexpr int kHeaderWords = 6;
constexpr int kInstrWords = 3;
constexpr int kMaxInstr = 1 << 16;
constexpr int kMaxParams = 64;   // dependency masks are 64-bit
constexpr int kMaxVars = 256;
constexpr int kMaxPowi = 64;

enum Op : int32_t {
  kConst = 0,
  kParam = 1,
  kVar = 2,
  // binary
  kAdd = 3,
  kSub = 4,
  kMul = 5,
  kDiv = 6,
  kPow = 7,    // a^b, real exponent
  kAtan2 = 8,  // atan2(a, b)
  kMin = 9,    // ties take a; a NaN in either operand gives NaN
  kMax = 10,   // ties take a; a NaN in either operand gives NaN
  // unary
  kNeg = 11,
  kExp = 12,
  kLog = 13,
  kLog10 = 14,
  kSqrt = 15,
  kAbs = 16,
  kSin = 17,
  kCos = 18,
  kTan = 19,
  kAsin = 20,
  kAcos = 21,
  kAtan = 22,
  kSinh = 23,
  kCosh = 24,
  kTanh = 25,
  // integer power with a literal exponent; x^0 is the constant 1 (x is not
  // evaluated and the result depends on no parameter)
  kPowi = 26,
  // comparisons (binary), 1.0 if the relation holds, else 0.0. IEEE: every
  // comparison with a NaN operand is false, so it gives 0.0, except kNe,
  // which gives 1.0; -0 equals 0.
  kLt = 27,
  kLe = 28,
  kGt = 29,
  kGe = 30,
  kEq = 31,
  kNe = 32,
  // logical, 1.0 or 0.0. An operand is true when it is nonzero and not NaN
  // (a NaN is false). Both operands are always evaluated.
  kAnd = 33,  // binary
  kOr = 34,   // binary
  kNot = 35,  // unary: 1.0 when a is false (0, -0 or NaN)
  // Comparisons and logical operators are piecewise constant: their
  // derivative is taken as 0 everywhere, and their values carry no tangents.
  kOpCount = 36
};

}  // namespace nlfit
