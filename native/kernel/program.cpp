// The model virtual machine: verifies bytecode (bytecode.hpp) and evaluates
// the rows [w*J | w*(f - y)] of a block of kBlockSize points with exact
// forward-mode derivatives.
//
// The plan, built once by verify() and shared read-only by every thread:
//
// * SSA. Instruction i defines value i from earlier values only, so one
//   forward pass gives each value its 64-bit mask of the parameters it depends
//   on and whether it varies per point (reads a data column), and one backward
//   pass from the output finds the live instructions; dead ones never run.
//
// * Scalar prelude. Values that do not vary per point (constants, parameters
//   and everything built only from them, like -b or b5^2) are computed once
//   per setParams(), with their tangents, and enter the block loops as
//   broadcast scalars. They cost nothing per point.
//
// * Liveness-allocated vector registers. A varying value is computed for a
//   whole block by one loop over kBlockSize points, so dispatch is paid once
//   per block and the loops vectorise. Its register holds the value block and
//   one tangent block per parameter in its mask, in compact slots (the tangent
//   for parameter j is slot rank(j within mask)): (1 + popcount) blocks, not
//   (1 + p). A register is freed after the last use of its value and reused
//   best-fit by size, so however long the expression, a block's working set is
//   the few values live at once and stays in cache.
//
// * Tangent slots. A result's tangent for parameter j is da*ta + db*tb, where
//   a term is absent, not zero, when its operand lacks j (0 * inf would be
//   NaN). Which terms exist, and whether each is scalar or per point, is
//   decided per slot before the point loop runs (vm_ops.hpp).
//
// * Staging. The data columns the program reads, y and sigma are copied into
//   aligned scratch and padded with the last valid row, so every loop runs on
//   aligned full blocks (no epilogue, no NaN from padding) and the bits of a
//   block never depend on the caller's addresses.
#include "program.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <new>

#include "vm_ops.hpp"

namespace nlfit {

struct PlanStep {
  struct Operand {
    int32_t instr = 0;
    int64_t offset = -1;      // arena offset of the value block; -1 when scalar
    uint64_t mask = 0;
    int64_t tangentBase = 0;  // scalar operands: first slot in the scalar tangent store
    bool isBlock() const { return offset >= 0; }
  };
  int32_t op = 0;
  int32_t instr = 0;
  int32_t index = 0;      // kParam: parameter index; kPowi: exponent
  double constant = 0.0;  // kConst: its value
  Operand a, b;
  uint64_t mask = 0;
  int64_t out = -1;         // vector steps: arena offset of the result register
  int64_t tangentBase = 0;  // scalar steps: first slot in the scalar tangent store
};

Program::~Program() = default;

namespace {

constexpr int64_t kB = kBlockSize;

// Scratch one evaluator may need (arena plus scalar store). Real models need
// kilobytes (Gauss1 about 100 KiB); the limit only stops a hostile program
// from making every worker allocate gigabytes.
constexpr int64_t kMaxScratchBytes = int64_t{64} << 20;

// Arena: [staged columns | y | weights | temp0 | temp1 | registers], every
// part a whole number of blocks so every part is kAlign-aligned.
struct ArenaLayout {
  int64_t y, weights, temp0, temp1, registers;
  explicit ArenaLayout(std::size_t nStaged)
      : y(static_cast<int64_t>(nStaged) * kB),
        weights(y + kB),
        temp0(weights + kB),
        temp1(temp0 + kB),
        registers(temp1 + kB) {}
};

const char* const kOpNames[kOpCount] = {
    "const", "param", "var",  "add",  "sub",  "mul",  "div",  "pow",  "atan2",
    "min",   "max",   "neg",  "exp",  "log",  "log10", "sqrt", "abs", "sin",
    "cos",   "tan",   "asin", "acos", "atan", "sinh", "cosh", "tanh", "powi"};

enum class Shape { kLoad, kBinary, kUnary, kPowi };

Shape shapeOf(int32_t op) {
  if (op <= kVar) return Shape::kLoad;
  if (op <= kMax) return Shape::kBinary;
  if (op == kPowi) return Shape::kPowi;
  return Shape::kUnary;
}

int popcount(uint64_t m) { return __builtin_popcountll(m); }

// Slot of parameter j among the tangents of a value with this mask.
int rankIn(uint64_t mask, int j) { return popcount(mask & ((uint64_t{1} << j) - 1)); }

[[noreturn]] void fail(const std::string& message) { throw ProgramError(message); }

std::string hex32(int32_t v) {
  static const char digits[] = "0123456789ABCDEF";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s += digits[(static_cast<uint32_t>(v) >> shift) & 15u];
  return s;
}

std::string rangeText(int64_t lo, int64_t hi, bool hiOpen) {
  return "[" + std::to_string(lo) + ", " + std::to_string(hi) + (hiOpen ? ")" : "]");
}

void checkHeaderField(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    fail(std::string(name) + " = " + std::to_string(v) + " is out of range " + rangeText(lo, hi, false));
  }
}

void checkInstruction(int i, const int32_t* w, int64_t nConsts, int nParams, int nVars) {
  const int32_t op = w[0], a = w[1], b = w[2];
  if (op < 0 || op >= kOpCount) {
    fail("instruction " + std::to_string(i) + ": opcode " + std::to_string(op) + " is out of range " +
         rangeText(0, kOpCount - 1, false));
  }
  const std::string where = "instruction " + std::to_string(i) + " (" + kOpNames[op] + "): ";
  auto checkEarlier = [&](const char* name, int32_t ref) {
    if (ref < 0 || ref >= i) {
      fail(where + "operand " + name + " = " + std::to_string(ref) +
           " does not refer to an earlier instruction");
    }
  };
  auto checkUnused = [&](int32_t v) {
    if (v != 0) fail(where + "unused operand b = " + std::to_string(v) + " must be 0");
  };
  switch (shapeOf(op)) {
    case Shape::kLoad: {
      const char* what = op == kConst ? "constant" : op == kParam ? "parameter" : "variable";
      const int64_t limit = op == kConst ? nConsts : op == kParam ? nParams : nVars;
      if (a < 0 || a >= limit) {
        fail(where + what + " index a = " + std::to_string(a) + " is out of range " +
             rangeText(0, limit, true));
      }
      checkUnused(b);
      break;
    }
    case Shape::kUnary:
      checkEarlier("a", a);
      checkUnused(b);
      break;
    case Shape::kBinary:
      checkEarlier("a", a);
      checkEarlier("b", b);
      break;
    case Shape::kPowi:
      checkEarlier("a", a);
      if (b < -kMaxPowi || b > kMaxPowi) {
        fail(where + "exponent b = " + std::to_string(b) + " is out of range " +
             rangeText(-kMaxPowi, kMaxPowi, false));
      }
      break;
  }
}

// Value operands of an instruction (loads have none; x^0 ignores its base).
int valueOperands(int32_t op, int32_t a, int32_t b, int32_t out[2]) {
  switch (shapeOf(op)) {
    case Shape::kLoad: return 0;
    case Shape::kUnary: out[0] = a; return 1;
    case Shape::kPowi: out[0] = a; return b == 0 ? 0 : 1;
    case Shape::kBinary: out[0] = a; out[1] = b; return a == b ? 1 : 2;
  }
  return 0;
}

// Best-fit reuse of freed registers, sized in blocks.
class RegisterFile {
 public:
  explicit RegisterFile(int64_t base) : top_(base) {}
  int64_t allocate(int64_t blocks) {
    auto it = free_.lower_bound(blocks);
    if (it != free_.end()) {
      int64_t offset = it->second;
      free_.erase(it);
      return offset;
    }
    int64_t offset = top_;
    capacity_[offset] = blocks;
    top_ += blocks * kB;
    return offset;
  }
  void release(int64_t offset) { free_.emplace(capacity_.at(offset), offset); }
  int64_t end() const { return top_; }

 private:
  int64_t top_;
  std::map<int64_t, int64_t> capacity_;        // register offset -> blocks
  std::multimap<int64_t, int64_t> free_;       // blocks -> register offset
};

void checkScratchBudget(int64_t arenaDoubles, int64_t scalarDoubles) {
  if ((arenaDoubles + scalarDoubles) * static_cast<int64_t>(sizeof(double)) > kMaxScratchBytes) {
    fail("the program needs more than " + std::to_string(kMaxScratchBytes >> 20) +
         " MiB of evaluation scratch (too many values with parameter tangents are live at once)");
  }
}

}  // namespace

std::shared_ptr<const Program> Program::verify(const int32_t* code, int64_t nCode,
                                               const double* consts, int64_t nConsts) {
  if (nCode < kHeaderWords) {
    fail("program has " + std::to_string(nCode) + " words, fewer than the " +
         std::to_string(kHeaderWords) + "-word header");
  }
  if (code == nullptr) fail("program code is null");
  if (code[0] != kMagic) fail("bad magic " + hex32(code[0]) + " (expected " + hex32(kMagic) + ")");
  if (code[1] != kVersion) {
    fail("unsupported bytecode version " + std::to_string(code[1]) + " (expected " +
         std::to_string(kVersion) + ")");
  }
  const int32_t nInstr = code[2], nParams = code[3], nVars = code[4], headerConsts = code[5];
  checkHeaderField("nInstr", nInstr, 1, kMaxInstr);
  checkHeaderField("nParams", nParams, 0, kMaxParams);
  checkHeaderField("nVars", nVars, 0, kMaxVars);
  if (headerConsts < 0) fail("nConsts = " + std::to_string(headerConsts) + " is negative");
  const int64_t expectedWords = kHeaderWords + static_cast<int64_t>(nInstr) * kInstrWords;
  if (nCode != expectedWords) {
    fail("program has " + std::to_string(nCode) + " words but its header describes " +
         std::to_string(expectedWords) + " (" + std::to_string(kHeaderWords) + " + " +
         std::to_string(kInstrWords) + " * nInstr " + std::to_string(nInstr) + ")");
  }
  if (nConsts != headerConsts) {
    fail("header says nConsts = " + std::to_string(headerConsts) + " but " + std::to_string(nConsts) +
         " constants were given");
  }
  if (nConsts > 0 && consts == nullptr) fail("constants are null");

  const int32_t* instr = code + kHeaderWords;
  for (int i = 0; i < nInstr; ++i) {
    checkInstruction(i, instr + static_cast<int64_t>(i) * kInstrWords, nConsts, nParams, nVars);
  }

  std::shared_ptr<Program> prog(new Program());
  Program& p = *prog;
  p.nParams_ = nParams;
  p.nVars_ = nVars;
  p.ops_.resize(nInstr);
  p.argA_.resize(nInstr);
  p.argB_.resize(nInstr);
  p.masks_.assign(nInstr, 0);
  p.varying_.assign(nInstr, 0);
  for (int i = 0; i < nInstr; ++i) {
    const int32_t* w = instr + static_cast<int64_t>(i) * kInstrWords;
    const int32_t op = w[0], a = w[1], b = w[2];
    p.ops_[i] = op;
    p.argA_[i] = a;
    p.argB_[i] = b;
    if (op == kParam) {
      p.masks_[i] = uint64_t{1} << a;
    } else if (op == kVar) {
      p.varying_[i] = 1;
    } else if (op != kConst) {
      int32_t refs[2];
      int nRefs = valueOperands(op, a, b, refs);
      for (int r = 0; r < nRefs; ++r) {
        p.masks_[i] |= p.masks_[refs[r]];
        p.varying_[i] |= p.varying_[refs[r]];
      }
    }
  }
  const int32_t last = nInstr - 1;
  p.outputMask_ = p.masks_[last];

  // Liveness: which instructions the output needs, and the last instruction
  // that reads each value (the output is never released).
  std::vector<uint8_t> live(nInstr, 0);
  std::vector<int32_t> lastUse(nInstr, -1);
  live[last] = 1;
  for (int i = last; i >= 0; --i) {
    if (!live[i]) continue;
    int32_t refs[2];
    int nRefs = valueOperands(p.ops_[i], p.argA_[i], p.argB_[i], refs);
    for (int r = 0; r < nRefs; ++r) {
      live[refs[r]] = 1;
      lastUse[refs[r]] = std::max(lastUse[refs[r]], i);
    }
  }
  lastUse[last] = nInstr;

  std::vector<int32_t> stagedSlot(nVars, -1);
  for (int i = 0; i < nInstr; ++i) {
    if (live[i] && p.ops_[i] == kVar && stagedSlot[p.argA_[i]] < 0) {
      stagedSlot[p.argA_[i]] = static_cast<int32_t>(p.stagedVars_.size());
      p.stagedVars_.push_back(p.argA_[i]);
    }
  }
  const ArenaLayout layout(p.stagedVars_.size());
  RegisterFile registers(layout.registers);

  std::vector<int64_t> valueOffset(nInstr, -1);
  std::vector<int64_t> tangentBase(nInstr, 0);
  auto operand = [&](int32_t ref) {
    PlanStep::Operand o;
    o.instr = ref;
    o.offset = valueOffset[ref];
    o.mask = p.masks_[ref];
    o.tangentBase = tangentBase[ref];
    return o;
  };
  for (int i = 0; i < nInstr; ++i) {
    if (!live[i]) continue;
    const int32_t op = p.ops_[i];
    if (op == kVar) {
      valueOffset[i] = static_cast<int64_t>(stagedSlot[p.argA_[i]]) * kB;
      continue;
    }
    PlanStep step;
    step.op = op;
    step.instr = i;
    step.mask = p.masks_[i];
    if (op == kConst) step.constant = consts[p.argA_[i]];
    if (op == kParam || op == kPowi) step.index = op == kParam ? p.argA_[i] : p.argB_[i];
    const Shape shape = shapeOf(op);
    if (shape != Shape::kLoad) step.a = operand(p.argA_[i]);
    if (shape == Shape::kBinary) step.b = operand(p.argB_[i]);

    if (!p.varying_[i]) {
      tangentBase[i] = step.tangentBase = p.scalarTangentCount_;
      p.scalarTangentCount_ += popcount(step.mask);
      p.scalarSteps_.push_back(step);
    } else {
      valueOffset[i] = step.out = registers.allocate(1 + popcount(step.mask));
      checkScratchBudget(registers.end(), nInstr + p.scalarTangentCount_);
      // Released only after the result has its own register: the tangent
      // loops still read the operands after the value is written.
      int32_t refs[2];
      int nRefs = valueOperands(op, p.argA_[i], p.argB_[i], refs);
      for (int r = 0; r < nRefs; ++r) {
        int32_t ref = refs[r];
        if (lastUse[ref] == i && p.varying_[ref] && p.ops_[ref] != kVar) registers.release(valueOffset[ref]);
      }
      p.vectorSteps_.push_back(step);
    }
  }
  p.arenaDoubles_ = registers.end();
  checkScratchBudget(p.arenaDoubles_, nInstr + p.scalarTangentCount_);
  p.outputInstr_ = last;
  p.outputOffset_ = valueOffset[last];
  p.outputTangentBase_ = tangentBase[last];
  return prog;
}

// ---- evaluator --------------------------------------------------------------

struct BlockEvaluator::Scratch {
  struct AlignedDelete {
    void operator()(double* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }
  };
  std::unique_ptr<double[], AlignedDelete> arena;
  std::vector<double> scalarValues;    // one per instruction; scalar steps only are meaningful
  std::vector<double> scalarTangents;  // compact slots of the scalar steps
  bool paramsSet = false;
};

BlockEvaluator::BlockEvaluator(std::shared_ptr<const Program> program)
    : program_(std::move(program)), scratch_(new Scratch()) {
  if (!program_) throw std::invalid_argument("BlockEvaluator: program is null");
  const Program& p = *program_;
  const std::size_t doubles = static_cast<std::size_t>(p.arenaDoubles_);
  double* arena = static_cast<double*>(::operator new[](doubles * sizeof(double), std::align_val_t(kAlign)));
  // Zeroed once so no path can ever read an uninitialised double.
  std::fill(arena, arena + doubles, 0.0);
  scratch_->arena.reset(arena);
  scratch_->scalarValues.assign(p.ops_.size(), 0.0);
  scratch_->scalarTangents.assign(static_cast<std::size_t>(p.scalarTangentCount_), 0.0);
}

BlockEvaluator::~BlockEvaluator() = default;

void BlockEvaluator::setParams(const double* theta) {
  const Program& p = *program_;
  if (theta == nullptr && p.nParams_ > 0) throw std::invalid_argument("setParams: theta is null");
  double* values = scratch_->scalarValues.data();
  double* tangents = scratch_->scalarTangents.data();
  for (const PlanStep& step : p.scalarSteps_) {
    double* t = tangents + step.tangentBase;
    double v = 0.0;
    switch (shapeOf(step.op)) {
      case Shape::kLoad:
        if (step.op == kConst) {
          v = step.constant;
        } else {
          v = theta[step.index];
          t[0] = 1.0;
        }
        break;
      case Shape::kPowi: {
        if (step.index == 0) {
          v = 1.0;
          break;
        }
        const double a = values[step.a.instr];
        const double* ta = tangents + step.a.tangentBase;
        v = vm::powi(a, step.index);
        if (step.mask) {
          const double d = vm::powiDerivative(a, step.index);
          for (int k = 0, n = popcount(step.mask); k < n; ++k) t[k] = d * ta[k];
        }
        break;
      }
      case Shape::kUnary: {
        const double a = values[step.a.instr];
        const double* ta = tangents + step.a.tangentBase;
        vm::withUnaryOp(step.op, [&](auto tag) {
          constexpr int Op = decltype(tag)::value;
          v = vm::unaryValue<Op>(a);
          if (step.mask) {
            const double d = vm::unaryDerivative<Op>(a, v);
            for (int k = 0, n = popcount(step.mask); k < n; ++k) t[k] = d * ta[k];
          }
        });
        break;
      }
      case Shape::kBinary: {
        const double a = values[step.a.instr], b = values[step.b.instr];
        const double* ta = tangents + step.a.tangentBase;
        const double* tb = tangents + step.b.tangentBase;
        const uint64_t ma = step.a.mask, mb = step.b.mask;
        vm::withBinaryOp(step.op, [&](auto tag) {
          constexpr int Op = decltype(tag)::value;
          v = vm::binaryValue<Op>(a, b);
          if (!step.mask) return;
          int k = 0;
          if constexpr (Op == kMin || Op == kMax) {
            const bool takeA = Op == kMin ? vm::minTakesA(a, b) : vm::maxTakesA(a, b);
            for (uint64_t m = step.mask; m; m &= m - 1, ++k) {
              const int j = __builtin_ctzll(m);
              const bool hasA = (ma >> j) & 1u, hasB = (mb >> j) & 1u;
              t[k] = takeA ? (hasA ? ta[rankIn(ma, j)] : 0.0) : (hasB ? tb[rankIn(mb, j)] : 0.0);
            }
          } else {
            const double da = ma ? vm::binaryDa<Op>(a, b, v) : 0.0;
            const double db = mb ? vm::binaryDb<Op>(a, b, v) : 0.0;
            for (uint64_t m = step.mask; m; m &= m - 1, ++k) {
              const int j = __builtin_ctzll(m);
              const bool hasA = (ma >> j) & 1u, hasB = (mb >> j) & 1u;
              if (hasA && hasB) {
                t[k] = da * ta[rankIn(ma, j)] + db * tb[rankIn(mb, j)];
              } else if (hasA) {
                t[k] = da * ta[rankIn(ma, j)];
              } else {
                t[k] = db * tb[rankIn(mb, j)];
              }
            }
          }
        });
        break;
      }
    }
    values[step.instr] = v;
  }
  scratch_->paramsSet = true;
}

void BlockEvaluator::checkBlockArgs(const Columns& cols, int64_t first, int rows, bool needY) const {
  const Program& p = *program_;
  if (!scratch_->paramsSet) throw std::logic_error("setParams() must be called before evaluating blocks");
  if (rows < 0 || rows > kBlockSize) {
    throw std::invalid_argument("rows = " + std::to_string(rows) + " is out of range " +
                                rangeText(0, kBlockSize, false));
  }
  if (first < 0 || first > INT64_MAX - rows) {
    throw std::invalid_argument("first = " + std::to_string(first) + " is out of range");
  }
  if (!p.stagedVars_.empty()) {
    if (cols.vars == nullptr || cols.nVars < p.nVars_) {
      throw std::invalid_argument("the program reads " + std::to_string(p.nVars_) +
                                  " data columns but " +
                                  std::to_string(cols.vars == nullptr ? 0 : cols.nVars) + " were given");
    }
    for (int32_t v : p.stagedVars_) {
      if (cols.vars[v] == nullptr) throw std::invalid_argument("data column " + std::to_string(v) + " is null");
    }
  }
  if (needY && cols.y == nullptr) throw std::invalid_argument("the y column is null");
}

namespace {

void stageColumn(double* dst, const double* src, int rows) {
  std::memcpy(dst, src, static_cast<std::size_t>(rows) * sizeof(double));
  std::fill(dst + rows, dst + kBlockSize, src[rows - 1]);
}

}  // namespace

void BlockEvaluator::stageRows(const Columns& cols, int64_t first, int rows, bool withResidual) {
  const Program& p = *program_;
  double* arena = scratch_->arena.get();
  const ArenaLayout layout(p.stagedVars_.size());
  for (std::size_t k = 0; k < p.stagedVars_.size(); ++k) {
    stageColumn(arena + static_cast<int64_t>(k) * kB, cols.vars[p.stagedVars_[k]] + first, rows);
  }
  if (!withResidual) return;
  stageColumn(arena + layout.y, cols.y + first, rows);
  if (cols.sigma != nullptr) {
    double* w = arena + layout.weights;
    stageColumn(w, cols.sigma + first, rows);
    vm::map1(w, static_cast<const double*>(w), [](double s) { return 1.0 / s; });
  }
}

void BlockEvaluator::runVectorSteps(bool withTangents) {
  for (const PlanStep& step : program_->vectorSteps_) {
    computeValue(step);
    if (withTangents && step.mask) computeTangents(step);
  }
}

namespace {

// Calls f with each operand as a block pointer or a broadcast scalar; at least
// one operand of a vector step is a block.
template <class F>
void withOperands(const PlanStep& step, const double* arena, const double* values, F&& f) {
  const PlanStep::Operand &a = step.a, &b = step.b;
  if (a.isBlock() && b.isBlock()) {
    f(arena + a.offset, arena + b.offset);
  } else if (a.isBlock()) {
    f(arena + a.offset, values[b.instr]);
  } else {
    f(values[a.instr], arena + b.offset);
  }
}

}  // namespace

void BlockEvaluator::computeValue(const PlanStep& step) {
  double* arena = scratch_->arena.get();
  const double* values = scratch_->scalarValues.data();
  double* out = arena + step.out;
  switch (shapeOf(step.op)) {
    case Shape::kPowi:
      vm::powiBlock(out, arena + step.a.offset, step.index);
      break;
    case Shape::kUnary: {
      const double* a = arena + step.a.offset;
      vm::withUnaryOp(step.op, [&](auto tag) {
        constexpr int Op = decltype(tag)::value;
        vm::map1(out, a, [](double x) { return vm::unaryValue<Op>(x); });
      });
      break;
    }
    case Shape::kBinary:
      vm::withBinaryOp(step.op, [&](auto tag) {
        constexpr int Op = decltype(tag)::value;
        withOperands(step, arena, values, [&](auto a, auto b) {
          vm::map2(out, a, b, [](double x, double y) { return vm::binaryValue<Op>(x, y); });
        });
      });
      break;
    case Shape::kLoad:
      break;
  }
}

void BlockEvaluator::computeTangents(const PlanStep& step) {
  using vm::Factor;
  using vm::FactorKind;
  double* arena = scratch_->arena.get();
  const double* values = scratch_->scalarValues.data();
  const double* scalarTangents = scratch_->scalarTangents.data();
  const ArenaLayout layout(program_->stagedVars_.size());
  double* temp0 = arena + layout.temp0;
  double* temp1 = arena + layout.temp1;
  double* out = arena + step.out;
  const PlanStep::Operand &a = step.a, &b = step.b;
  const Factor one{FactorKind::kOne, 0.0, nullptr};
  auto blockFactor = [](const double* p) { return Factor{FactorKind::kBlock, 0.0, p}; };
  auto operandFactor = [&](const PlanStep::Operand& o) {
    return o.isBlock() ? blockFactor(arena + o.offset) : Factor{FactorKind::kScalar, values[o.instr], nullptr};
  };

  Factor fa = one, fb = one;
  bool select = false;
  switch (step.op) {
    case kNeg:
      fa = Factor{FactorKind::kMinusOne, 0.0, nullptr};
      break;
    case kExp:
      fa = blockFactor(out);
      break;
    case kPowi:
      if (step.index != 1) {
        const double n = step.index;
        vm::powiBlock(temp0, arena + a.offset, step.index - 1);
        vm::map1(temp0, static_cast<const double*>(temp0), [n](double x) { return n * x; });
        fa = blockFactor(temp0);
      }
      break;
    case kAdd:
      break;
    case kSub:
      fb = Factor{FactorKind::kMinusOne, 0.0, nullptr};
      break;
    case kMul:
      fa = operandFactor(b);
      fb = operandFactor(a);
      break;
    case kDiv:
      if (a.mask) {
        if (b.isBlock()) {
          vm::map1(temp0, static_cast<const double*>(arena + b.offset),
                   [](double y) { return vm::binaryDa<kDiv>(0.0, y, 0.0); });
          fa = blockFactor(temp0);
        } else {
          fa = Factor{FactorKind::kScalar, vm::binaryDa<kDiv>(0.0, values[b.instr], 0.0), nullptr};
        }
      }
      if (b.mask) {
        const double* v = out;
        withOperands(step, arena, values, [&](auto, auto y) {
          vm::map2(temp1, v, y, [](double q, double d) { return vm::binaryDb<kDiv>(0.0, d, q); });
        });
        fb = blockFactor(temp1);
      }
      break;
    case kMin:
    case kMax:
      select = true;
      withOperands(step, arena, values, [&](auto x, auto y) {
        if (step.op == kMin) {
          vm::map2(temp0, x, y, [](double p, double q) { return vm::minTakesA(p, q) ? 1.0 : 0.0; });
        } else {
          vm::map2(temp0, x, y, [](double p, double q) { return vm::maxTakesA(p, q) ? 1.0 : 0.0; });
        }
      });
      break;
    case kPow:
    case kAtan2:
      vm::withBinaryOp(step.op, [&](auto tag) {
        constexpr int Op = decltype(tag)::value;
        if constexpr (Op == kPow || Op == kAtan2) {
          const double* v = out;
          withOperands(step, arena, values, [&](auto x, auto y) {
            if (a.mask) {
              vm::map3(temp0, x, y, v, [](double p, double q, double r) { return vm::binaryDa<Op>(p, q, r); });
            }
            if (b.mask) {
              vm::map3(temp1, x, y, v, [](double p, double q, double r) { return vm::binaryDb<Op>(p, q, r); });
            }
          });
        }
      });
      fa = blockFactor(temp0);
      fb = blockFactor(temp1);
      break;
    default: {
      const double* x = arena + a.offset;
      const double* v = out;
      vm::withUnaryOp(step.op, [&](auto tag) {
        constexpr int Op = decltype(tag)::value;
        vm::map2(temp0, x, v, [](double p, double r) { return vm::unaryDerivative<Op>(p, r); });
      });
      fa = blockFactor(temp0);
      break;
    }
  }

  auto term = [&](const PlanStep::Operand& o, const Factor& f, int j) {
    if (!((o.mask >> j) & 1u)) return vm::Term{};
    const int slot = rankIn(o.mask, j);
    if (o.isBlock()) return vm::scaledBlock(f, arena + o.offset + (slot + 1) * kB);
    return vm::scaledScalar(f, scalarTangents[o.tangentBase + slot]);
  };
  const bool binary = shapeOf(step.op) == Shape::kBinary;
  int k = 0;
  for (uint64_t m = step.mask; m; m &= m - 1, ++k) {
    const int j = __builtin_ctzll(m);
    double* slotOut = out + (k + 1) * kB;
    const vm::Term ta = term(a, fa, j);
    const vm::Term tb = binary ? term(b, fb, j) : vm::Term{};
    if (select) {
      vm::selectTerms(slotOut, temp0, ta, tb);
    } else {
      vm::sumTerms(slotOut, ta, tb);
    }
  }
}

void BlockEvaluator::evalBlock(const Columns& cols, int64_t first, int rows, double* A) {
  checkBlockArgs(cols, first, rows, true);
  if (A == nullptr || reinterpret_cast<std::uintptr_t>(A) % kAlign != 0) {
    throw std::invalid_argument("evalBlock: A must be a non-null buffer aligned to " +
                                std::to_string(kAlign) + " bytes");
  }
  const Program& p = *program_;
  const int64_t nColumns = p.nParams_ + 1;
  if (rows == 0) {
    std::fill(A, A + nColumns * kB, 0.0);
    return;
  }
  stageRows(cols, first, rows, true);
  runVectorSteps(true);

  const double* arena = scratch_->arena.get();
  const double* values = scratch_->scalarValues.data();
  const double* scalarTangents = scratch_->scalarTangents.data();
  const ArenaLayout layout(p.stagedVars_.size());
  const double* y = arena + layout.y;
  auto write = [&](auto weights) {
    for (int j = 0; j < p.nParams_; ++j) {
      double* column = A + static_cast<int64_t>(j) * kB;
      if (!((p.outputMask_ >> j) & 1u)) {
        vm::fill(column, 0.0);
        continue;
      }
      const int slot = rankIn(p.outputMask_, j);
      if (p.outputOffset_ >= 0) {
        vm::writeTangentColumn(column, rows, weights,
                               static_cast<const double*>(arena + p.outputOffset_ + (slot + 1) * kB));
      } else {
        vm::writeTangentColumn(column, rows, weights, scalarTangents[p.outputTangentBase_ + slot]);
      }
    }
    double* residual = A + static_cast<int64_t>(p.nParams_) * kB;
    if (p.outputOffset_ >= 0) {
      vm::writeResidualColumn(residual, rows, weights, static_cast<const double*>(arena + p.outputOffset_), y);
    } else {
      vm::writeResidualColumn(residual, rows, weights, values[p.outputInstr_], y);
    }
  };
  if (cols.sigma != nullptr) {
    write(static_cast<const double*>(arena + layout.weights));
  } else {
    write(vm::Unweighted{});
  }
}

void BlockEvaluator::evalValues(const Columns& cols, int64_t first, int rows, double* out) {
  checkBlockArgs(cols, first, rows, false);
  if (rows == 0) return;
  if (out == nullptr) throw std::invalid_argument("evalValues: out is null");
  const Program& p = *program_;
  stageRows(cols, first, rows, false);
  runVectorSteps(false);
  if (p.outputOffset_ >= 0) {
    const double* f = scratch_->arena.get() + p.outputOffset_;
    std::copy(f, f + rows, out);
  } else {
    std::fill(out, out + rows, scratch_->scalarValues[p.outputInstr_]);
  }
}

}  // namespace nlfit
