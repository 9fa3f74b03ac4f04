// A verified model program and the per-thread evaluator that runs it over
// blocks of points with exact forward-mode derivatives.
//
// Contract
//   Program::verify(...) checks a bytecode program (bytecode.hpp) and builds an
//   execution plan. It throws ProgramError for any program that could make
//   evaluation read or write out of bounds or read an undefined value, and for
//   one whose plan and per-thread scratch would exceed 64 MiB (real models need
//   kilobytes; the cap keeps a hostile program from exhausting every worker).
//   A verified Program is immutable and may be shared by threads.
//
//   BlockEvaluator holds the scratch for one thread (aligned, reused between
//   blocks and between calls). It is not thread-safe; use one per thread.
//   Its blocks have W = width() rows: kBlockSize (the default, every pass of
//   a single fit) or a narrower width of kBlockWidths (layout.hpp), for the
//   small curves of a batch, where a 512-row block would be mostly padding.
//   Every point gets the same bits at any width (the loops are elementwise
//   and compiled for each width alike).
//
//   setParams(theta)            once per pass: evaluates the parameter-only
//                               (scalar) part of the program and its tangents.
//                               The first call compiles the block loops; later
//                               ones only recompute their coefficients.
//   evalBlock(cols, first, rows, A)
//                               fills A, W x (nParams + 1), column
//                               major, aligned to kAlign:
//                                 A[j*W + i] = w_i * d f(x_i) / d theta_j
//                                 A[p*W + i] = w_i * (f(x_i) - y_i)
//                               for i < rows, with w_i = 1/sigma_i (1 without a
//                               sigma column); rows i >= rows are exactly 0.
//                               Columns of parameters the model does not depend
//                               on, or depends on only through comparisons and
//                               logical operators (piecewise constant), are
//                               exactly 0. Non-finite values are written
//                               as they are (the caller detects them).
//   evalValues(cols, first, rows, out)
//                               f(x_i) for i < rows (no derivatives).
//   modelValues()               with keepValues: f(x_i), i < W, of the last
//                               evalBlock (the values its residuals were
//                               computed from; valid until the next call).
//
//   The evaluator throws std::invalid_argument for rows outside [0, W],
//   first < 0, missing columns or y, or an A that is null or not aligned to
//   kAlign, and std::logic_error if a block is evaluated before setParams.
//
// Determinism: the bits written for a block depend only on the program, the
// parameters and the block's rows; never on the addresses of the caller's
// columns or on other blocks. Within one build, that is: compilers contract
// multiply-adds into FMAs and libmvec's SSE, AVX2 and AVX-512 variants differ
// in the last bits, so a -march=native build and a portable one may differ.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bytecode.hpp"
#include "columns.hpp"
#include "layout.hpp"

namespace nlfit {

class ProgramError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct PlanStep;  // defined in program.cpp

class Program {
 public:
  static std::shared_ptr<const Program> verify(const int32_t* code, int64_t nCode,
                                               const double* consts, int64_t nConsts);
  int nParams() const { return nParams_; }
  int nVars() const { return nVars_; }
  int nInstr() const { return static_cast<int>(ops_.size()); }
  // Bitmask of the parameters the model value depends on.
  uint64_t outputMask() const { return outputMask_; }
  ~Program();

 private:
  Program() = default;
  // Liveness, register allocation and tangent slots of a checked program.
  void buildPlan(const double* consts);
  friend class BlockEvaluator;
  int nParams_ = 0, nVars_ = 0;
  std::vector<int32_t> ops_, argA_, argB_;
  std::vector<uint64_t> masks_;   // parameter dependency per instruction
  std::vector<uint8_t> varying_;  // 1 if the value depends on a data column
  uint64_t outputMask_ = 0;

  // Execution plan built by verify(); PlanStep is defined in program.cpp.
  std::vector<PlanStep> scalarSteps_;  // live parameter-only instructions, in order
  std::vector<PlanStep> vectorSteps_;  // live per-point instructions, in order
  std::vector<int32_t> stagedVars_;    // data columns read, in staging order
  int64_t scalarTangentCount_ = 0;     // compact tangent slots of all scalar steps
  int64_t vectorSlotCount_ = 0;        // tangent slots of all vector steps
  int64_t kernelBound_ = 0;            // most kernels a compiled plan can have
  int64_t arenaDoubles_ = 0;           // staged columns, y, weights, temps, registers
  // Where the model value lives: an arena offset when it varies per point,
  // else -1 and the value is scalar instruction outputInstr_.
  int32_t outputInstr_ = 0;
  int64_t outputOffset_ = -1;
  int64_t outputTangentBase_ = 0;  // scalar output only
};

class BlockEvaluator {
 public:
  // width: one of kBlockWidths (std::invalid_argument otherwise). keepValues:
  // keep the model values of each evalBlock for modelValues().
  explicit BlockEvaluator(std::shared_ptr<const Program> program, int width = kBlockSize,
                          bool keepValues = false);
  ~BlockEvaluator();
  BlockEvaluator(const BlockEvaluator&) = delete;
  BlockEvaluator& operator=(const BlockEvaluator&) = delete;

  static bool supportedWidth(int width);
  // Bytes of scratch this evaluator holds (reported to the JavaScript engine so
  // its garbage collector knows what a small wrapper object keeps alive).
  int64_t scratchBytes() const;
  const Program& program() const { return *program_; }
  int width() const;
  void setParams(const double* theta);
  void evalBlock(const Columns& cols, int64_t first, int rows, double* A);
  void evalValues(const Columns& cols, int64_t first, int rows, double* out);
  const double* modelValues() const;

 private:
  struct Scratch;
  void checkBlockArgs(const Columns& cols, int64_t first, int rows, bool needY) const;
  void stageVars(const Columns& cols, int64_t first, int rows);
  // Binds the plan to this evaluator's scratch and the current parameters:
  // a flat list of block loops with their pointers and coefficients, and the
  // tape that recomputes the coefficients for new parameters.
  template <int Width>
  void compileKernels();
  void replayCoefficients();
  std::shared_ptr<const Program> program_;
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace nlfit
