// The model virtual machine: verifies bytecode (bytecode.hpp) and evaluates
// the rows [w*J | w*(f - y)] of a block of points with exact forward-mode
// derivatives.
//
// The plan, built once by verify() and shared read-only by every thread:
//
// * SSA. Instruction i defines value i from earlier values only, so one
//   forward pass gives each value its 64-bit mask of the parameters it depends
//   on and whether it varies per point (reads a data column), and one backward
//   pass from the output finds the live instructions; dead ones never run.
//   Comparisons and logical operators are piecewise constant: their
//   derivative is 0 wherever it exists, so their mask is empty (they still
//   vary per point when an operand does) and no tangent of theirs is computed.
//
// * Scalar prelude. Values that do not vary per point (constants, parameters
//   and everything built only from them, like -b or b5^2) are computed once
//   per setParams(), with their tangents, and enter the block loops as
//   broadcast scalars. They cost nothing per point.
//
// * Block loops. A varying value is computed for a whole block by one loop
//   over the block's points, so the loops vectorise (libmvec for exp, log, ...)
//   and no decision is ever taken per point. Measured here, every such pass
//   costs about the same (~0.06 ns per point, in L1 or L2, against ~0.45 for
//   a vector exp), so the plan is built to make as few passes as it can.
//
// * Compact tangent slots. A varying value carries one tangent per parameter
//   in its mask (slot = rank of the parameter within the mask), never one per
//   model parameter. A slot is one of
//     uniform: the same for every point (d(x - mu)/dmu = -1): a scalar;
//     view:    a scalar times a block that already exists (d(b3*g)/db3 = g,
//              d(-u)/dj = -du/dj, d(u/s)/dj = du/dj / s): no pass at all;
//     own:     anything else, computed by one pass into the value's register.
//   A result tangent is da*ta + db*tb, where a term is absent, not zero, when
//   its operand lacks the parameter (0 * inf would be NaN).
//
// * Liveness-allocated registers. A register holds a value block and its own
//   slots: (1 + own slots) blocks. It is released when no live value needs it
//   any more (its value, and every value with a view into it, is past its last
//   use) and reused best-fit by size, so however long the expression, a block's
//   working set is the few values live at once and stays in cache.
//
// * The output instruction writes its tangents straight into A, weighted and
//   with padded rows zeroed, so they are never copied; an output a+b or a-b
//   is computed together with the residual.
//
// * The first setParams() compiles the plan into a flat list of kernels (one
//   loop each, pointers and scalar coefficients bound), so evaluating a block
//   is calling them in order; later calls only recompute the coefficients,
//   from a tape recorded by the compilation (see BlockEvaluator::Scratch).
//
// * Block widths. The plan lays out its arena in blocks of kBlockSize rows;
//   an evaluator of a narrower width (kBlockWidths, for the small curves of a
//   batch) lays out the same blocks with its own width and runs the loops
//   compiled for it. The loops are elementwise, so every point gets the bits
//   it would get in a kBlockSize block.
//
// * Staging. The data columns the program reads (and y and sigma of a short
//   last block) are copied into aligned scratch and padded with the last valid
//   row, so every loop runs on aligned full blocks (no epilogue, no NaN from
//   padding) and the bits of a block never depend on the caller's addresses.
//   y and sigma of a full block are read in place: only exact elementwise
//   arithmetic touches them, which alignment cannot change.
#include "program.hpp"

#include <algorithm>
#include <map>
#include <new>
#include <tuple>

#include "vm_ops.hpp"

namespace nlfit {

struct PlanStep {
  enum SlotKind : uint8_t { kUniform, kView, kOwn };
  struct Slot {
    SlotKind kind = kOwn;
    int64_t block = -1;  // kView, kOwn: arena offset of its block (-1: the output's own slots go to A)
    int32_t owner = -1;  // register holding `block`; -1 for a staged column or none
  };
  struct Operand {
    int32_t instr = 0;
    int64_t offset = -1;  // arena offset of the value block; -1 when scalar
    uint64_t mask = 0;
    int32_t step = -1;        // vector operands: index of the step that computes it (-1: a data column)
    int64_t tangentBase = 0;  // scalar operands: first slot in the scalar tangent store
    bool isBlock() const { return offset >= 0; }
  };
  int32_t op = 0;
  int32_t instr = 0;
  int32_t index = 0;      // kParam: parameter index; kPowi: exponent
  double constant = 0.0;  // kConst: its value
  Operand a, b;
  uint64_t mask = 0;
  int64_t out = -1;          // vector steps: arena offset of the value block
  int64_t tangentBase = 0;   // scalar steps: first slot in the scalar tangent store
  int64_t coefBase = 0;      // vector steps: first of its slots' coefficients
  std::vector<Slot> slots;   // vector steps: one per parameter in the mask
};

Program::~Program() = default;

namespace {

constexpr int64_t kB = kBlockSize;

// Memory one program may need: its plan plus one evaluator's scratch. Real
// models need kilobytes (Gauss1 about 100 KiB); the limit only stops a
// hostile program from making every worker allocate gigabytes.
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
    "cos",   "tan",   "asin", "acos", "atan", "sinh", "cosh", "tanh", "powi",
    "lt",    "le",    "gt",   "ge",   "eq",   "ne",   "and",  "or",  "not"};

enum class Shape { kLoad, kBinary, kUnary, kPowi };

// For opcodes in [0, kOpCount), which checkInstruction() has ensured.
Shape shapeOf(int32_t op) {
  if (op <= kVar) return Shape::kLoad;
  if (op <= kMax || (op >= kLt && op <= kOr)) return Shape::kBinary;
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


// ---- planning ----------------------------------------------------------------

// How the partial derivative of a step in one operand looks across a block:
// the same for every point, a scalar times a block that lives as long as the
// step's value (an operand or the value itself), a block computed into a
// temporary, or a min/max selection. compileKernels() builds exactly these.
enum class FactorShape { kUniform, kBlock, kTemp, kSelect };

struct FactorPlan {
  FactorShape shape = FactorShape::kTemp;
  int64_t block = -1;    // kBlock: arena offset
  int32_t owner = -1;    // kBlock: instruction whose register holds it (-1: none)
};

FactorPlan planFactor(const PlanStep& s, bool forB) {
  const PlanStep::Operand& other = forB ? s.a : s.b;
  switch (s.op) {
    case kAdd:
    case kSub:
    case kNeg:
      return {FactorShape::kUniform};
    case kMul:
      if (!other.isBlock()) return {FactorShape::kUniform};
      return {FactorShape::kBlock, other.offset, other.instr};
    case kDiv:
      if (s.b.isBlock()) return {FactorShape::kTemp};
      if (!forB) return {FactorShape::kUniform};
      return {FactorShape::kBlock, s.out, s.instr};  // -1/b times the value
    case kExp:
      return {FactorShape::kBlock, s.out, s.instr};
    case kPowi:
      if (s.index == 1) return {FactorShape::kUniform};
      if (s.index == 2) return {FactorShape::kBlock, s.a.offset, s.a.instr};  // 2 times the base
      return {FactorShape::kTemp};
    case kMin:
    case kMax:
      return {FactorShape::kSelect};
    default:
      return {FactorShape::kTemp};
  }
}

struct TangentPlan {
  bool uniform = true;
  int64_t block = -1;
  int32_t owner = -1;
};

TangentPlan planTangent(const PlanStep::Operand& o, int j, const std::vector<PlanStep>& steps) {
  if (!o.isBlock()) return {};
  const PlanStep::Slot& slot = steps[o.step].slots[rankIn(o.mask, j)];
  if (slot.kind == PlanStep::kUniform) return {};
  return {false, slot.block, slot.owner};
}

// The kind of step s's tangent for parameter j (own slots get their block
// later, once the register is known).
PlanStep::Slot planSlot(const PlanStep& s, int j, const std::vector<PlanStep>& steps,
                        const std::vector<int32_t>& registerOf) {
  PlanStep::Slot own;
  if (s.op == kMin || s.op == kMax) return own;
  const bool hasA = (s.a.mask >> j) & 1u;
  const bool hasB = shapeOf(s.op) == Shape::kBinary && ((s.b.mask >> j) & 1u);
  const FactorPlan fa = planFactor(s, false), fb = planFactor(s, true);
  const TangentPlan ta = hasA ? planTangent(s.a, j, steps) : TangentPlan{};
  const TangentPlan tb = hasB ? planTangent(s.b, j, steps) : TangentPlan{};
  PlanStep::Slot slot;
  if (hasA && hasB) {
    const bool uniform = fa.shape == FactorShape::kUniform && ta.uniform &&
                         fb.shape == FactorShape::kUniform && tb.uniform;
    slot.kind = uniform ? PlanStep::kUniform : PlanStep::kOwn;
    return slot;
  }
  const FactorPlan& f = hasA ? fa : fb;
  const TangentPlan& t = hasA ? ta : tb;
  if (f.shape == FactorShape::kUniform && t.uniform) {
    slot.kind = PlanStep::kUniform;
  } else if (f.shape == FactorShape::kUniform) {
    slot = {PlanStep::kView, t.block, t.owner};
  } else if (f.shape == FactorShape::kBlock && t.uniform) {
    slot = {PlanStep::kView, f.block, f.owner >= 0 ? registerOf[f.owner] : -1};
  }
  return slot;
}

// Best-fit reuse of released registers, sized in blocks.
class RegisterFile {
 public:
  explicit RegisterFile(int64_t base) : top_(base) {}
  int32_t allocate(int64_t blocks) {
    auto it = free_.lower_bound(blocks);
    if (it != free_.end()) {
      const int32_t id = it->second;
      free_.erase(it);
      holders_[id] = 0;
      return id;
    }
    regs_.push_back({top_, blocks});
    holders_.push_back(0);
    top_ += blocks * kB;
    return static_cast<int32_t>(regs_.size()) - 1;
  }
  int64_t offset(int32_t id) const { return regs_[id].offset; }
  void hold(int32_t id) { ++holders_[id]; }
  void drop(int32_t id) {
    if (--holders_[id] == 0) free_.emplace(regs_[id].blocks, id);
  }
  int64_t end() const { return top_; }

 private:
  struct Reg {
    int64_t offset, blocks;
  };
  int64_t top_;
  std::vector<Reg> regs_;
  std::vector<int32_t> holders_;          // live values that need the register
  std::multimap<int64_t, int32_t> free_;  // blocks -> register
};

// What a plan and one evaluator of it will hold, checked against
// kMaxScratchBytes as the plan grows, so a hostile program is rejected before
// anything large is allocated.
struct MemoryUse {
  int64_t arenaDoubles = 0, scalarDoubles = 0, slots = 0, kernels = 0, steps = 0;
  // The coefficient tape of a compiled plan (BlockEvaluator::Scratch): a
  // kernel's coefficients take one or two nodes (12 bytes and a value each)
  // and a patch (16 bytes) each.
  static constexpr int64_t kTapeBytesPerKernel = 2 * (20 + 16);
  int64_t bytes() const {
    return (arenaDoubles + scalarDoubles) * static_cast<int64_t>(sizeof(double)) +
           slots * static_cast<int64_t>(sizeof(PlanStep::Slot) + sizeof(double)) +
           kernels * static_cast<int64_t>(sizeof(vm::Kernel) + kTapeBytesPerKernel) +
           steps * static_cast<int64_t>(sizeof(PlanStep));
  }
  void check() const {
    if (bytes() > kMaxScratchBytes) {
      fail("the program needs more than " + std::to_string(kMaxScratchBytes >> 20) +
           " MiB of evaluation scratch (too many values with parameter tangents are live at once)");
    }
  }
};

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
      // A piecewise-constant value depends on its operands' parameters only
      // through jumps: its tangents are 0, so it gets none (mask 0).
      const bool carriesTangents = !vm::isPiecewiseConstant(op);
      int32_t refs[2];
      const int nRefs = valueOperands(op, a, b, refs);
      for (int r = 0; r < nRefs; ++r) {
        if (carriesTangents) p.masks_[i] |= p.masks_[refs[r]];
        p.varying_[i] |= p.varying_[refs[r]];
      }
    }
  }
  p.outputMask_ = p.masks_[nInstr - 1];
  p.buildPlan(consts);
  return prog;
}

void Program::buildPlan(const double* consts) {
  const int32_t nInstr = static_cast<int32_t>(ops_.size());
  const int32_t last = nInstr - 1;

  // Liveness: which instructions the output needs, and the last instruction
  // that reads each value (the output is never released).
  std::vector<uint8_t> live(nInstr, 0);
  std::vector<int32_t> lastUse(nInstr, -1);
  live[last] = 1;
  for (int i = last; i >= 0; --i) {
    if (!live[i]) continue;
    int32_t refs[2];
    const int nRefs = valueOperands(ops_[i], argA_[i], argB_[i], refs);
    for (int r = 0; r < nRefs; ++r) {
      live[refs[r]] = 1;
      lastUse[refs[r]] = std::max(lastUse[refs[r]], i);
    }
  }
  lastUse[last] = nInstr;

  std::vector<int32_t> stagedSlot(nVars_, -1);
  for (int i = 0; i < nInstr; ++i) {
    if (live[i] && ops_[i] == kVar && stagedSlot[argA_[i]] < 0) {
      stagedSlot[argA_[i]] = static_cast<int32_t>(stagedVars_.size());
      stagedVars_.push_back(argA_[i]);
    }
  }
  const ArenaLayout layout(stagedVars_.size());
  RegisterFile registers(layout.registers);
  MemoryUse memory;
  memory.scalarDoubles = nInstr;
  memory.kernels = nParams_ + 1;  // columns of A and the residual

  std::vector<int64_t> valueOffset(nInstr, -1);
  std::vector<int64_t> tangentBase(nInstr, 0);
  std::vector<int32_t> stepOf(nInstr, -1);
  std::vector<int32_t> registerOf(nInstr, -1);
  std::vector<std::vector<int32_t>> holds(nInstr);  // registers each value keeps alive
  auto operand = [&](int32_t ref) {
    PlanStep::Operand o;
    o.instr = ref;
    o.offset = valueOffset[ref];
    o.mask = masks_[ref];
    o.step = stepOf[ref];
    o.tangentBase = tangentBase[ref];
    return o;
  };
  for (int i = 0; i < nInstr; ++i) {
    if (!live[i]) continue;
    const int32_t op = ops_[i];
    if (op == kVar) {
      valueOffset[i] = static_cast<int64_t>(stagedSlot[argA_[i]]) * kB;
      continue;
    }
    PlanStep step;
    step.op = op;
    step.instr = i;
    step.mask = masks_[i];
    if (op == kConst) step.constant = consts[argA_[i]];
    if (op == kParam || op == kPowi) step.index = op == kParam ? argA_[i] : argB_[i];
    const Shape shape = shapeOf(op);
    if (shape != Shape::kLoad) step.a = operand(argA_[i]);
    if (shape == Shape::kBinary) step.b = operand(argB_[i]);

    if (!varying_[i]) {
      tangentBase[i] = step.tangentBase = scalarTangentCount_;
      scalarTangentCount_ += popcount(step.mask);
      memory.scalarDoubles += popcount(step.mask);
      memory.check();
      scalarSteps_.push_back(std::move(step));
      continue;
    }

    const int nSlots = popcount(step.mask);
    memory.slots += nSlots;
    memory.kernels += 3 + nSlots;  // value, two partial derivatives, a pass per slot
    memory.steps += 1;
    memory.check();
    // Slot kinds first: they decide the register's size.
    step.slots.resize(nSlots);
    int ownSlots = 0, k = 0;
    for (uint64_t m = step.mask; m; m &= m - 1, ++k) {
      step.slots[k] = planSlot(step, __builtin_ctzll(m), vectorSteps_, registerOf);
      ownSlots += step.slots[k].kind == PlanStep::kOwn;
    }
    // The output's own tangents are written straight into A: it needs only a value block.
    const int32_t reg = registers.allocate(i == last ? 1 : 1 + ownSlots);
    memory.arenaDoubles = registers.end();
    memory.check();
    registerOf[i] = reg;
    valueOffset[i] = step.out = registers.offset(reg);
    // Again, now that views of the value itself know where it lives.
    int own = 0;
    k = 0;
    for (uint64_t m = step.mask; m; m &= m - 1, ++k) {
      PlanStep::Slot& slot = step.slots[k];
      slot = planSlot(step, __builtin_ctzll(m), vectorSteps_, registerOf);
      if (slot.kind == PlanStep::kOwn) {
        slot.owner = reg;
        slot.block = i == last ? -1 : step.out + (1 + own++) * kB;
      }
    }
    std::vector<int32_t>& held = holds[i];
    held.push_back(reg);
    for (const PlanStep::Slot& slot : step.slots) {
      if (slot.kind == PlanStep::kView && slot.owner >= 0) held.push_back(slot.owner);
    }
    std::sort(held.begin(), held.end());
    held.erase(std::unique(held.begin(), held.end()), held.end());
    for (int32_t r : held) registers.hold(r);
    // Operands whose last use this is let go of their registers only now,
    // after the result has its own: its loops still read them.
    int32_t refs[2];
    const int nRefs = valueOperands(op, argA_[i], argB_[i], refs);
    for (int r = 0; r < nRefs; ++r) {
      if (lastUse[refs[r]] != i) continue;
      for (int32_t dropped : holds[refs[r]]) registers.drop(dropped);
      std::vector<int32_t>().swap(holds[refs[r]]);
    }
    step.coefBase = vectorSlotCount_;
    vectorSlotCount_ += nSlots;
    stepOf[i] = static_cast<int32_t>(vectorSteps_.size());
    vectorSteps_.push_back(std::move(step));
  }
  arenaDoubles_ = registers.end();
  kernelBound_ = memory.kernels;
  outputInstr_ = last;
  outputOffset_ = valueOffset[last];
  outputTangentBase_ = tangentBase[last];
}

// ---- evaluator --------------------------------------------------------------

namespace {

// One operation of the coefficient tape (see BlockEvaluator::Scratch).
struct CoefNode {
  enum Kind : uint8_t { kConst, kValue, kTangent, kMul, kAdd, kDiv };
  Kind kind = kConst;
  // kValue, kTangent: index of a scalar value or tangent of the prelude;
  // kMul, kAdd, kDiv: operand nodes.
  int32_t a = 0, b = 0;
};

// A coefficient while the kernels are compiled: its value and the tape node
// that computes it.
struct Coef {
  double v = 0.0;
  int32_t node = -1;
};

// Records the coefficient arithmetic of compileKernels(). Operations on
// constants only are folded: they give the same bits on every replay.
class CoefRecorder {
 public:
  CoefRecorder(std::vector<CoefNode>& nodes, std::vector<double>& values, const double* scalarValues,
               const double* scalarTangents)
      : nodes_(nodes), values_(values), scalarValues_(scalarValues), scalarTangents_(scalarTangents) {}
  Coef constant(double c) { return push({CoefNode::kConst, 0, 0}, c); }
  Coef value(int64_t i) { return push({CoefNode::kValue, static_cast<int32_t>(i), 0}, scalarValues_[i]); }
  Coef tangent(int64_t i) { return push({CoefNode::kTangent, static_cast<int32_t>(i), 0}, scalarTangents_[i]); }
  Coef mul(Coef a, Coef b) { return binary(CoefNode::kMul, a, b, a.v * b.v); }
  Coef add(Coef a, Coef b) { return binary(CoefNode::kAdd, a, b, a.v + b.v); }
  Coef div(Coef a, Coef b) { return binary(CoefNode::kDiv, a, b, a.v / b.v); }

 private:
  bool isConstant(Coef c) const { return nodes_[c.node].kind == CoefNode::kConst; }
  Coef binary(CoefNode::Kind kind, Coef a, Coef b, double v) {
    if (isConstant(a) && isConstant(b)) return constant(v);
    return push({kind, a.node, b.node}, v);
  }
  Coef push(CoefNode node, double v) {
    nodes_.push_back(node);
    values_.push_back(v);
    return {v, static_cast<int32_t>(nodes_.size()) - 1};
  }
  std::vector<CoefNode>& nodes_;
  std::vector<double>& values_;
  const double* scalarValues_;
  const double* scalarTangents_;
};

}  // namespace

// The coefficients of the compiled kernels (the scalars their loops multiply
// by: parameter-only values, their tangents, products of partial
// derivatives) are the only part of the compiled plan that depends on the
// parameters. The first setParams() compiles the kernels and records how each
// coefficient is computed, as a tape; later calls replay the tape and store
// the results into the kernels. The replay performs the same IEEE operations
// on the same operands in the same order as the compilation, so the
// coefficients have the same bits, and a new parameter vector costs a few
// dozen scalar operations instead of a compilation (which dominated the cost
// of evaluating a small curve).
struct BlockEvaluator::Scratch {
  struct AlignedDelete {
    void operator()(double* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }
  };
  using AlignedDoubles = std::unique_ptr<double[], AlignedDelete>;
  static AlignedDoubles allocate(std::size_t doubles) {
    double* p = static_cast<double*>(::operator new[](doubles * sizeof(double), std::align_val_t(kAlign)));
    // Zeroed once so no path can ever read an uninitialised double.
    std::fill(p, p + doubles, 0.0);
    return AlignedDoubles(p);
  }
  int width = kBlockSize;
  bool keepValues = false;
  AlignedDoubles arena;
  AlignedDoubles scalarOutput;         // keepValues with an output that does not vary per point
  std::vector<double> scalarValues;    // one per instruction; scalar steps only are meaningful
  std::vector<double> scalarTangents;  // compact slots of the scalar steps
  std::vector<vm::Kernel> blockKernels;  // evalBlock: values, tangents, columns of A
  std::vector<vm::Kernel> valueKernels;  // evalValues: values only
  std::vector<CoefNode> tape;
  std::vector<double> tapeValues;                    // one per tape node
  std::vector<std::pair<int32_t, double*>> patches;  // tape node -> the kernel field it sets
  bool compiled = false;
  bool paramsSet = false;
};

bool BlockEvaluator::supportedWidth(int width) {
  for (int w : kBlockWidths)
    if (w == width) return true;
  return false;
}

BlockEvaluator::BlockEvaluator(std::shared_ptr<const Program> program, int width, bool keepValues)
    : program_(std::move(program)), scratch_(new Scratch()) {
  if (!program_) throw std::invalid_argument("BlockEvaluator: program is null");
  if (!supportedWidth(width)) {
    throw std::invalid_argument("BlockEvaluator: block width " + std::to_string(width) + " is not supported");
  }
  const Program& p = *program_;
  Scratch& s = *scratch_;
  s.width = width;
  s.keepValues = keepValues;
  // The plan lays the arena out in blocks of kBlockSize rows; this
  // evaluator's blocks have `width` rows.
  s.arena = Scratch::allocate(static_cast<std::size_t>(p.arenaDoubles_ / kB * width));
  if (keepValues && p.outputOffset_ < 0) s.scalarOutput = Scratch::allocate(static_cast<std::size_t>(width));
  s.scalarValues.assign(p.ops_.size(), 0.0);
  s.scalarTangents.assign(static_cast<std::size_t>(p.scalarTangentCount_), 0.0);
  s.blockKernels.reserve(static_cast<std::size_t>(p.kernelBound_));
  s.valueKernels.reserve(p.vectorSteps_.size());
}

BlockEvaluator::~BlockEvaluator() = default;

int64_t BlockEvaluator::scratchBytes() const {
  const Program& p = *program_;
  const Scratch& s = *scratch_;
  int64_t doubles = p.arenaDoubles_ / kB * s.width + (s.scalarOutput ? s.width : 0);
  doubles += static_cast<int64_t>(s.scalarValues.size() + s.scalarTangents.size());
  return doubles * static_cast<int64_t>(sizeof(double)) +
         static_cast<int64_t>((s.blockKernels.capacity() + s.valueKernels.capacity()) * sizeof(vm::Kernel));
}

int BlockEvaluator::width() const { return scratch_->width; }

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
          if constexpr (vm::isPiecewiseConstant(Op)) return;  // mask 0
          else if (step.mask) {
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
          if constexpr (vm::isPiecewiseConstant(Op)) {
            return;  // unreachable: these have mask 0
          } else if constexpr (Op == kMin || Op == kMax) {
            const bool takeA = Op == kMin ? vm::minTakesA(a, b) : vm::maxTakesA(a, b);
            int k = 0;
            for (uint64_t m = step.mask; m; m &= m - 1, ++k) {
              const int j = __builtin_ctzll(m);
              const bool hasA = (ma >> j) & 1u, hasB = (mb >> j) & 1u;
              t[k] = takeA ? (hasA ? ta[rankIn(ma, j)] : 0.0) : (hasB ? tb[rankIn(mb, j)] : 0.0);
            }
          } else {
            const double da = ma ? vm::binaryDa<Op>(a, b, v) : 0.0;
            const double db = mb ? vm::binaryDb<Op>(a, b, v) : 0.0;
            int k = 0;
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
  Scratch& s = *scratch_;
  if (s.compiled) {
    replayCoefficients();
  } else {
    switch (s.width) {
      case kBlockWidths[0]: compileKernels<kBlockWidths[0]>(); break;
      case kBlockWidths[1]: compileKernels<kBlockWidths[1]>(); break;
      case kBlockWidths[2]: compileKernels<kBlockWidths[2]>(); break;
      default: compileKernels<kBlockWidths[3]>(); break;
    }
    s.compiled = true;
  }
  s.paramsSet = true;
}

void BlockEvaluator::replayCoefficients() {
  Scratch& s = *scratch_;
  double* v = s.tapeValues.data();
  const double* values = s.scalarValues.data();
  const double* tangents = s.scalarTangents.data();
  const std::size_t n = s.tape.size();
  for (std::size_t i = 0; i < n; ++i) {
    const CoefNode& node = s.tape[i];
    switch (node.kind) {
      case CoefNode::kConst: break;  // recorded once
      case CoefNode::kValue: v[i] = values[node.a]; break;
      case CoefNode::kTangent: v[i] = tangents[node.a]; break;
      case CoefNode::kMul: v[i] = v[node.a] * v[node.b]; break;
      case CoefNode::kAdd: v[i] = v[node.a] + v[node.b]; break;
      case CoefNode::kDiv: v[i] = v[node.a] / v[node.b]; break;
    }
  }
  for (const auto& [node, field] : s.patches) *field = v[node];
}

namespace {

// A partial derivative (factor) or an operand tangent at compile time: a
// scalar, or a scale times a block.
struct Scaled {
  bool uniform = true;
  Coef s;
  const double* p = nullptr;
};

// A term of a tangent sum (vm_ops.hpp): c, c*p[i] or (c*p[i])*q[i].
struct Term {
  vm::TermKind kind = vm::TermKind::kNone;
  Coef c;
  const double* p = nullptr;
  const double* q = nullptr;
};

Term termOf(CoefRecorder& rec, const Scaled& f, const Scaled& t) {
  const Coef c = rec.mul(f.s, t.s);
  if (f.uniform && t.uniform) return {vm::TermKind::kConst, c, nullptr, nullptr};
  if (f.uniform) return {vm::TermKind::kScaled, c, t.p, nullptr};
  if (t.uniform) return {vm::TermKind::kScaled, c, f.p, nullptr};
  return {vm::TermKind::kScaledProd, c, f.p, t.p};
}

// A kernel being compiled, with the tape nodes of its coefficients.
struct KernelDraft {
  vm::Kernel k;
  int32_t coefNode[2] = {-1, -1};
  void setCoef(int i, Coef c) {
    k.c[i] = c.v;
    coefNode[i] = c.node;
  }
};

[[noreturn]] void planMismatch() {
  throw std::logic_error("model VM: compiled kernels disagree with the plan (internal error)");
}

}  // namespace

template <int Width>
void BlockEvaluator::compileKernels() {
  using vm::Kernel;
  const Program& p = *program_;
  Scratch& s = *scratch_;
  // Plan offsets count kBlockSize-row blocks; this evaluator's have Width rows.
  auto place = [&s](int64_t offset) { return s.arena.get() + offset / kB * Width; };
  const ArenaLayout layout(p.stagedVars_.size());
  double* const temp[2] = {place(layout.temp0), place(layout.temp1)};
  s.blockKernels.clear();
  s.valueKernels.clear();
  s.tape.clear();
  s.tapeValues.clear();
  s.patches.clear();
  CoefRecorder rec(s.tape, s.tapeValues, s.scalarValues.data(), s.scalarTangents.data());
  std::vector<Coef> coefs(static_cast<std::size_t>(p.vectorSlotCount_));
  // Which kernel field each recorded coefficient sets: (list, kernel, field, node);
  // bound to addresses once the lists have stopped growing.
  struct PendingPatch {
    std::vector<Kernel>* list;
    std::size_t index;
    int field;
    int32_t node;
  };
  std::vector<PendingPatch> pending;
  auto push = [&](std::vector<Kernel>& list, const KernelDraft& d) {
    list.push_back(d.k);
    if (list.back().run[1] == nullptr) list.back().run[1] = list.back().run[0];
    for (int i = 0; i < 2; ++i) {
      if (d.coefNode[i] >= 0) pending.push_back({&list, list.size() - 1, i, d.coefNode[i]});
    }
  };
  auto emit = [&](const KernelDraft& d) { push(s.blockKernels, d); };
  auto block = [&](const PlanStep::Operand& o) -> const double* { return place(o.offset); };
  auto valueOf = [&](int32_t instr) { return rec.value(instr); };
  // Operand i of a value kernel: its block or its scalar value.
  auto bindOperand = [&](KernelDraft& d, int i, const PlanStep::Operand& o) {
    if (o.isBlock()) d.k.p[i] = block(o);
    else d.setCoef(i, valueOf(o.instr));
  };
  // A kernel that stores slot j of `step`: into its register, or (the output) into column j of A.
  auto storeFor = [&](Kernel& k, bool toColumn, int j, double* slotBlock, auto fnFor) {
    if (toColumn) {
      k.column = j;
      k.run[0] = fnFor(vm::ToColumn<vm::Unweighted>{});
      k.run[1] = fnFor(vm::ToColumn<const double*>{});
    } else {
      k.out = slotBlock;
      k.run[0] = k.run[1] = fnFor(vm::ToBlock{});
    }
  };
  auto sumKernel = [&](Term a, Term b, bool toColumn, int j, double* slotBlock) {
    if (a.kind == vm::TermKind::kNone) std::swap(a, b);  // IEEE addition commutes exactly
    KernelDraft d;
    if (a.kind != vm::TermKind::kNone) d.setCoef(0, a.c);
    d.k.p[0] = a.p;
    d.k.p[1] = a.q;
    if (b.kind != vm::TermKind::kNone) d.setCoef(1, b.c);
    d.k.p[2] = b.p;
    d.k.p[3] = b.q;
    storeFor(d.k, toColumn, j, slotBlock,
             [&](auto store) { return vm::sumKernelFor<Width, decltype(store)>(a.kind, b.kind); });
    emit(d);
  };
  const Coef one = rec.constant(1.0);

  // An output a+b or a-b is needed by evalBlock only for the residual (no
  // partial derivative of these reads the value): one fused pass. Unless
  // the caller wants the model values too.
  const bool fuseResidual = !s.keepValues && p.outputOffset_ >= 0 && !p.vectorSteps_.empty() &&
                            p.vectorSteps_.back().instr == p.outputInstr_ &&
                            (p.ops_[p.outputInstr_] == kAdd || p.ops_[p.outputInstr_] == kSub);
  for (const PlanStep& step : p.vectorSteps_) {
    double* out = place(step.out);
    const PlanStep::Operand &a = step.a, &b = step.b;
    const Shape shape = shapeOf(step.op);
    {
      KernelDraft d;
      d.k.out = out;
      if (shape == Shape::kPowi) {
        d.k.run[0] = &vm::powiKernel<Width>;
        d.k.p[0] = block(a);
        d.k.n = step.index;
      } else if (shape == Shape::kUnary) {
        d.k.run[0] = vm::unaryValueKernelFor<Width>(step.op);
        d.k.p[0] = block(a);
      } else {
        d.k.run[0] = vm::binaryValueKernelFor<Width>(step.op, a.isBlock(), b.isBlock());
        bindOperand(d, 0, a);
        bindOperand(d, 1, b);
      }
      push(s.valueKernels, d);
      if (!(fuseResidual && step.instr == p.outputInstr_)) emit(d);
    }
    if (!step.mask) continue;
    const bool isOutput = step.instr == p.outputInstr_;

    // Factors as planFactor() classified them; temporaries are computed on first use.
    Scaled factor[2];
    bool factorReady[2] = {false, false};
    auto factorOf = [&](int side) -> const Scaled& {
      if (factorReady[side]) return factor[side];
      factorReady[side] = true;
      const bool forB = side == 1;
      const PlanStep::Operand& other = forB ? a : b;
      Scaled& f = factor[side];
      auto computed = [&](double scale, KernelDraft& d) {
        d.k.out = temp[side];
        emit(d);
        f = {false, rec.constant(scale), temp[side]};
      };
      switch (step.op) {
        case kAdd: f = {true, one, nullptr}; break;
        case kSub: f = {true, rec.constant(forB ? -1.0 : 1.0), nullptr}; break;
        case kNeg: f = {true, rec.constant(-1.0), nullptr}; break;
        case kMul:
          f = other.isBlock() ? Scaled{false, one, block(other)} : Scaled{true, valueOf(other.instr), nullptr};
          break;
        case kDiv:
          if (b.isBlock()) {
            KernelDraft d;
            d.k.run[0] = forB ? &vm::divDbKernel<Width> : &vm::divDaKernel<Width>;
            d.k.p[0] = forB ? out : block(b);
            d.k.p[1] = block(b);
            computed(1.0, d);
          } else if (forB) {
            f = {false, rec.div(rec.constant(-1.0), valueOf(b.instr)), out};
          } else {
            // vm::binaryDa<kDiv>: 1 / b.
            f = {true, rec.div(one, valueOf(b.instr)), nullptr};
          }
          break;
        case kExp: f = {false, one, out}; break;
        case kPowi:
          if (step.index == 1) {
            f = {true, one, nullptr};
          } else if (step.index == 2) {
            f = {false, rec.constant(2.0), block(a)};
          } else {
            KernelDraft d;
            d.k.run[0] = &vm::powiKernel<Width>;
            d.k.p[0] = block(a);
            d.k.n = step.index - 1;
            computed(static_cast<double>(step.index), d);
          }
          break;
        case kPow:
        case kAtan2: {
          KernelDraft d;
          d.k.run[0] = vm::binaryPartialKernelFor<Width>(step.op, forB, a.isBlock(), b.isBlock());
          bindOperand(d, 0, a);
          bindOperand(d, 1, b);
          d.k.p[2] = out;
          computed(1.0, d);
          break;
        }
        default: {
          KernelDraft d;
          d.k.run[0] = vm::unaryDerivativeKernelFor<Width>(step.op);
          d.k.p[0] = block(a);
          d.k.p[1] = out;
          computed(1.0, d);
          break;
        }
      }
      return f;
    };
    auto tangentOf = [&](const PlanStep::Operand& o, int j) -> Scaled {
      const int r = rankIn(o.mask, j);
      if (!o.isBlock()) return {true, rec.tangent(o.tangentBase + r), nullptr};
      const PlanStep& src = p.vectorSteps_[o.step];
      const PlanStep::Slot& slot = src.slots[r];
      const Coef c = coefs[src.coefBase + r];
      if (slot.kind == PlanStep::kUniform) return {true, c, nullptr};
      return {false, c, place(slot.block)};
    };
    const bool select = step.op == kMin || step.op == kMax;
    if (select) {
      KernelDraft d;
      d.k.run[0] = vm::choiceKernelFor<Width>(step.op, a.isBlock(), b.isBlock());
      bindOperand(d, 0, a);
      bindOperand(d, 1, b);
      d.k.out = temp[0];
      emit(d);
    }

    int k = 0;
    for (uint64_t m = step.mask; m; m &= m - 1, ++k) {
      const int j = __builtin_ctzll(m);
      const PlanStep::Slot& slot = step.slots[k];
      Coef& coef = coefs[step.coefBase + k];
      double* slotBlock = slot.block >= 0 ? place(slot.block) : nullptr;
      const bool hasA = (a.mask >> j) & 1u;
      const bool hasB = shape == Shape::kBinary && ((b.mask >> j) & 1u);
      if (select) {
        const Scaled unit{true, one, nullptr}, zero{true, rec.constant(0.0), nullptr};
        const Term ta = termOf(rec, unit, hasA ? tangentOf(a, j) : zero);
        const Term tb = termOf(rec, unit, hasB ? tangentOf(b, j) : zero);
        coef = one;
        KernelDraft sd;
        sd.setCoef(0, ta.c);
        sd.k.p[0] = ta.p;
        sd.k.p[1] = temp[0];
        sd.setCoef(1, tb.c);
        sd.k.p[2] = tb.p;
        storeFor(sd.k, isOutput, j, slotBlock,
                 [&](auto store) { return vm::selectKernelFor<Width, decltype(store)>(ta.kind, tb.kind); });
        emit(sd);
        continue;
      }
      const Term ta = hasA ? termOf(rec, factorOf(0), tangentOf(a, j)) : Term{};
      const Term tb = hasB ? termOf(rec, factorOf(1), tangentOf(b, j)) : Term{};
      switch (slot.kind) {
        case PlanStep::kUniform: {
          const bool constant = (ta.kind == vm::TermKind::kConst || ta.kind == vm::TermKind::kNone) &&
                                (tb.kind == vm::TermKind::kConst || tb.kind == vm::TermKind::kNone);
          if (!constant) planMismatch();
          coef = ta.kind == vm::TermKind::kNone ? tb.c : tb.kind == vm::TermKind::kNone ? ta.c : rec.add(ta.c, tb.c);
          if (isOutput) sumKernel({vm::TermKind::kConst, coef, nullptr, nullptr}, {}, true, j, nullptr);
          break;
        }
        case PlanStep::kView: {
          const Term& t = hasA ? ta : tb;
          if ((hasA && hasB) || t.kind != vm::TermKind::kScaled || t.p != slotBlock) planMismatch();
          coef = t.c;
          if (isOutput) sumKernel(t, {}, true, j, nullptr);
          break;
        }
        case PlanStep::kOwn:
          coef = one;
          sumKernel(ta, tb, isOutput, j, slotBlock);
          break;
      }
    }
  }

  // Columns the output step did not write, and the residual.
  const bool outputIsBlock = p.outputOffset_ >= 0;
  const bool tangentsWritten = outputIsBlock && p.ops_[p.outputInstr_] != kVar;
  for (int j = 0; j < p.nParams_; ++j) {
    if (!((p.outputMask_ >> j) & 1u)) {
      KernelDraft d;
      d.k.run[0] = &vm::zeroColumnKernel<Width>;
      d.k.column = j;
      emit(d);
    } else if (!tangentsWritten) {
      const Coef t = rec.tangent(p.outputTangentBase_ + rankIn(p.outputMask_, j));
      sumKernel({vm::TermKind::kConst, t, nullptr, nullptr}, {}, true, j, nullptr);
    }
  }
  KernelDraft residual;
  residual.k.column = p.nParams_;
  if (fuseResidual) {
    const PlanStep& step = p.vectorSteps_.back();
    bindOperand(residual, 0, step.a);
    bindOperand(residual, 1, step.b);
    std::tie(residual.k.run[0], residual.k.run[1]) =
        vm::binaryResidualKernelFor<Width>(step.op, step.a.isBlock(), step.b.isBlock());
  } else if (outputIsBlock) {
    residual.k.p[0] = place(p.outputOffset_);
    residual.k.run[0] = &vm::residualKernel<Width, vm::ToColumn<vm::Unweighted>, true>;
    residual.k.run[1] = &vm::residualKernel<Width, vm::ToColumn<const double*>, true>;
  } else {
    residual.setCoef(0, valueOf(p.outputInstr_));
    residual.k.run[0] = &vm::residualKernel<Width, vm::ToColumn<vm::Unweighted>, false>;
    residual.k.run[1] = &vm::residualKernel<Width, vm::ToColumn<const double*>, false>;
  }
  emit(residual);
  for (const PendingPatch& patch : pending) {
    s.patches.emplace_back(patch.node, &(*patch.list)[patch.index].c[patch.field]);
  }
}

void BlockEvaluator::checkBlockArgs(const Columns& cols, int64_t first, int rows, bool needY) const {
  const Program& p = *program_;
  const int width = scratch_->width;
  if (!scratch_->paramsSet) throw std::logic_error("setParams() must be called before evaluating blocks");
  if (rows < 0 || rows > width) {
    throw std::invalid_argument("rows = " + std::to_string(rows) + " is out of range " +
                                rangeText(0, width, false));
  }
  if (first < 0 || first > INT64_MAX - rows) {
    throw std::invalid_argument("first = " + std::to_string(first) + " is out of range");
  }
  if (!p.stagedVars_.empty()) {
    if (cols.vars == nullptr || cols.nVars < p.nVars_) {
      throw std::invalid_argument("the program reads " + std::to_string(p.nVars_) + " data columns but " +
                                  std::to_string(cols.vars == nullptr ? 0 : cols.nVars) + " were given");
    }
    for (int32_t v : p.stagedVars_) {
      if (cols.vars[v] == nullptr) throw std::invalid_argument("data column " + std::to_string(v) + " is null");
    }
  }
  if (needY && cols.y == nullptr) throw std::invalid_argument("the y column is null");
}

namespace {

void stageColumn(double* dst, const double* src, int rows, int width) {
  std::copy(src, src + rows, dst);
  std::fill(dst + rows, dst + width, src[rows - 1]);
}

// Blocks are mostly read in order, and the rows of one column in one block
// are one 4 KiB page, which hardware prefetchers do not cross: each block
// would start with a DRAM round trip per column. Asking for the block after
// next hides most of it (measured for a*exp(-b*x)+c: 1.7 -> 1.4 ns/point;
// into L1 beat L2 by ~8%). A prefetch never faults and the address is formed
// as an integer, so asking past the end of a column is harmless. Always
// inlined: GCC sees a function made only of prefetches as having no effect
// and deletes calls to it. (Narrow blocks, the points of one small curve,
// are evaluated many times over while they sit in L1: no prefetch.)
__attribute__((always_inline)) inline void prefetchAhead(const std::vector<int32_t>& stagedVars,
                                                         const Columns& cols, int64_t first) {
  constexpr std::uintptr_t kDistance = 2 * kBlockSize * sizeof(double);
  auto prefetch = [first](const double* column) {
    const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(column) +
                                 static_cast<std::uintptr_t>(first) * sizeof(double) + kDistance;
    for (std::uintptr_t offset = 0; offset < kBlockSize * sizeof(double); offset += 64) {
      __builtin_prefetch(reinterpret_cast<const void*>(ahead + offset), 0, 3);
    }
  };
  for (int32_t v : stagedVars) prefetch(cols.vars[v]);
  if (cols.y != nullptr) prefetch(cols.y);
  if (cols.sigma != nullptr) prefetch(cols.sigma);
}

// w = 1 / sigma over a whole block.
template <int Width>
void invertSigma(double* w, const double* sigma) {
#pragma omp simd
  for (int i = 0; i < Width; ++i) w[i] = 1.0 / sigma[i];
}

}  // namespace

void BlockEvaluator::stageVars(const Columns& cols, int64_t first, int rows) {
  const Program& p = *program_;
  const int width = scratch_->width;
  double* arena = scratch_->arena.get();
  for (std::size_t k = 0; k < p.stagedVars_.size(); ++k) {
    stageColumn(arena + static_cast<int64_t>(k) * width, cols.vars[p.stagedVars_[k]] + first, rows, width);
  }
}

void BlockEvaluator::evalBlock(const Columns& cols, int64_t first, int rows, double* A) {
  checkBlockArgs(cols, first, rows, true);
  if (A == nullptr || reinterpret_cast<std::uintptr_t>(A) % kAlign != 0) {
    throw std::invalid_argument("evalBlock: A must be a non-null buffer aligned to " +
                                std::to_string(kAlign) + " bytes");
  }
  const Program& p = *program_;
  Scratch& s = *scratch_;
  const int width = s.width;
  if (rows == 0) {
    std::fill(A, A + (p.nParams_ + 1) * static_cast<int64_t>(width), 0.0);
    return;
  }
  if (width == kBlockSize) prefetchAhead(p.stagedVars_, cols, first);
  stageVars(cols, first, rows);
  double* arena = s.arena.get();
  const ArenaLayout layout(p.stagedVars_.size());
  auto place = [&](int64_t offset) { return arena + offset / kB * width; };
  vm::BlockContext ctx{A, rows, nullptr, nullptr};
  // y and sigma are only read by exact elementwise loops, so a full block
  // reads y where it is; a short block stages both to pad them.
  if (rows == width) {
    ctx.y = cols.y + first;
  } else {
    stageColumn(place(layout.y), cols.y + first, rows, width);
    ctx.y = place(layout.y);
  }
  if (cols.sigma != nullptr) {
    double* w = vm::aligned(place(layout.weights));
    const double* sigma = cols.sigma + first;
    if (rows != width) {
      stageColumn(w, sigma, rows, width);
      sigma = w;
    }
    switch (width) {
      case kBlockWidths[0]: invertSigma<kBlockWidths[0]>(w, sigma); break;
      case kBlockWidths[1]: invertSigma<kBlockWidths[1]>(w, sigma); break;
      case kBlockWidths[2]: invertSigma<kBlockWidths[2]>(w, sigma); break;
      default: invertSigma<kBlockWidths[3]>(w, sigma); break;
    }
    ctx.weights = w;
  }
  const int weighted = ctx.weights != nullptr;
  for (const vm::Kernel& k : s.blockKernels) k.run[weighted](k, ctx);
  if (s.scalarOutput) std::fill(s.scalarOutput.get(), s.scalarOutput.get() + width, s.scalarValues[p.outputInstr_]);
}

const double* BlockEvaluator::modelValues() const {
  const Program& p = *program_;
  const Scratch& s = *scratch_;
  if (!s.keepValues) throw std::logic_error("modelValues() needs an evaluator constructed with keepValues");
  if (s.scalarOutput) return s.scalarOutput.get();
  return s.arena.get() + p.outputOffset_ / kB * s.width;
}

void BlockEvaluator::evalValues(const Columns& cols, int64_t first, int rows, double* out) {
  checkBlockArgs(cols, first, rows, false);
  if (rows == 0) return;
  if (out == nullptr) throw std::invalid_argument("evalValues: out is null");
  const Program& p = *program_;
  const Scratch& s = *scratch_;
  if (s.width == kBlockSize) prefetchAhead(p.stagedVars_, cols, first);
  stageVars(cols, first, rows);
  const vm::BlockContext ctx{nullptr, rows, nullptr, nullptr};
  for (const vm::Kernel& k : s.valueKernels) k.run[0](k, ctx);
  if (p.outputOffset_ >= 0) {
    const double* f = s.arena.get() + p.outputOffset_ / kB * s.width;
    std::copy(f, f + rows, out);
  } else {
    std::fill(out, out + rows, s.scalarValues[p.outputInstr_]);
  }
}

}  // namespace nlfit
