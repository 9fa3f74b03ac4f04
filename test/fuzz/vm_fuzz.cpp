// A libFuzzer-compatible harness for the model VM (native/kernel/program.cpp):
// the bytes become a bytecode program, its constants and a block of data;
// the program goes through Program::verify, and one it accepts is evaluated
// on a block and the block reduced to its triangular factor (tsqr.hpp).
//
// Build with clang's libFuzzer:
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/kernel \
//       test/fuzz/vm_fuzz.cpp native/kernel/*.cpp -o vm_fuzz
// or with any compiler and the standalone mutation driver (test/fuzz/driver.cpp):
//   g++ -std=c++17 -g -O1 -fsanitize=address,undefined -Inative/kernel \
//       test/fuzz/vm_fuzz.cpp test/fuzz/driver.cpp native/kernel/*.cpp -o vm_fuzz
// test/fuzz/run.sh does one or the other.
//
// Input layout (little endian; bytes past the end read as 0):
//   byte 0  control: bit 0    raw: header and instructions are int32 words, verbatim
//                    bit 1    the block has a sigma column
//                    bits 2-3 block width kBlockWidths[bits]
//                    bits 4-5 first row of the block in the columns (0-3)
//                    bit 6    compact: the header claims one instruction more than given
//                    bit 7    compact: one constant more is given than the header says
//   byte 1  rows in the block: byte % (width + 1)
//   compact: nParams (u8 % 66), nVars (u8 % 10), nConsts (u8 % 17), nInstr (u8),
//            then nInstr instructions of op (u8 % 40), a (int16), b (int16)
//   raw:     nInstr given (u8), the 6 header words (int32), nInstr * 3 instruction
//            words (int32), then the number of constants given (u8)
//   then the constants (float64 each), then every remaining 8 bytes are a
//   float64 of the data pool, which fills the parameters, columns, y and
//   sigma in turn (a fixed pool of special values when it is empty).
//
// A verified program must evaluate without throwing and meet the evaluator's
// contract: padded rows and the columns of parameters outside the output's
// mask are exactly +0, the values kept by evalBlock equal evalValues', the
// bits do not depend on where the columns lie in memory nor on whether the
// parameters were set first or replayed by a later setParams, and the reduction
// of two copies of the block through the tree equals one merge of their
// factors (NaNs match any NaN: differing NaN bits are only counted). A
// violation aborts (a crash, for the fuzzer); the sanitizers catch
// out-of-bounds access and undefined behaviour.
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "program.hpp"
#include "tsqr.hpp"

using namespace nlfit;

namespace {

// Reads the input front to back; past its end every read is 0.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t u8() { return at_ < size_ ? data_[at_++] : (at_++, 0); }
  int16_t i16() { return static_cast<int16_t>(static_cast<uint16_t>(u8() | (u8() << 8))); }
  int32_t i32() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= static_cast<uint32_t>(u8()) << (8 * k);
    return static_cast<int32_t>(v);
  }
  double f64() {
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v |= static_cast<uint64_t>(u8()) << (8 * k);
    double d;
    std::memcpy(&d, &v, sizeof d);
    return d;
  }
  size_t remaining() const { return at_ < size_ ? size_ - at_ : 0; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

struct DecodedProgram {
  std::vector<int32_t> code;
  std::vector<double> consts;
};

DecodedProgram decodeProgram(ByteReader& in, uint8_t control) {
  DecodedProgram p;
  int nConstsGiven;
  if (control & 1u) {
    const int nInstr = in.u8();
    for (int w = 0; w < kHeaderWords + nInstr * kInstrWords; ++w) p.code.push_back(in.i32());
    nConstsGiven = in.u8();
  } else {
    const int nParams = in.u8() % (kMaxParams + 2);
    const int nVars = in.u8() % 10;
    const int nConsts = in.u8() % 17;
    const int nInstr = in.u8();
    p.code = {kMagic, kVersion, nInstr + ((control >> 6) & 1), nParams, nVars, nConsts};
    for (int i = 0; i < nInstr; ++i) {
      p.code.push_back(in.u8() % 40);
      p.code.push_back(in.i16());
      p.code.push_back(in.i16());
    }
    nConstsGiven = nConsts + ((control >> 7) & 1);
  }
  for (int c = 0; c < nConstsGiven; ++c) p.consts.push_back(in.f64());
  return p;
}

// Values for the parameters and the data: the rest of the input, cycled.
class DataPool {
 public:
  explicit DataPool(ByteReader& in) {
    while (in.remaining() >= 8) values_.push_back(in.f64());
    if (values_.empty()) values_ = {0.5, -1.0, 2.0, 0.0, -0.0, 1e-310, 1e308, INFINITY, NAN, 3.0};
  }
  double next() { return values_[at_++ % values_.size()]; }

 private:
  std::vector<double> values_;
  size_t at_ = 0;
};

// A kAlign-aligned array of doubles.
struct Aligned {
  explicit Aligned(size_t n)
      : p(static_cast<double*>(::operator new[](n * sizeof(double), std::align_val_t(kAlign)))), n(n) {}
  ~Aligned() { ::operator delete[](p, std::align_val_t(kAlign)); }
  Aligned(const Aligned&) = delete;
  Aligned& operator=(const Aligned&) = delete;
  double* p;
  size_t n;
};

// One heap array per column of exactly the length a block reads, so any read
// past it is an ASan report.
struct BlockData {
  std::vector<std::unique_ptr<double[]>> vars;
  std::vector<const double*> varPointers;
  std::unique_ptr<double[]> y, sigma;
  Columns columns;
};

// The block's data placed at row `first` of columns of first + rows values;
// `values` holds, per column (vars, then y, then sigma), the rows' values.
BlockData placeBlock(const std::vector<std::vector<double>>& values, int nVars, bool withSigma, int64_t first, int rows) {
  BlockData d;
  const size_t length = static_cast<size_t>(first + rows);
  auto column = [&](const std::vector<double>& rowValues) {
    std::unique_ptr<double[]> c(new double[length == 0 ? 1 : length]);
    for (int64_t i = 0; i < first; ++i) c[i] = 12345.0;
    for (int i = 0; i < rows; ++i) c[first + i] = rowValues[i];
    return c;
  };
  for (int v = 0; v < nVars; ++v) {
    d.vars.push_back(column(values[v]));
    d.varPointers.push_back(d.vars.back().get());
  }
  d.y = column(values[nVars]);
  if (withSigma) d.sigma = column(values[nVars + 1]);
  d.columns = Columns{d.varPointers.data(), nVars, d.y.get(), d.sigma.get()};
  return d;
}

bool isPositiveZero(double v) { return v == 0.0 && !std::signbit(v); }

bool sameBits(const double* a, const double* b, size_t n) { return n == 0 || std::memcmp(a, b, n * sizeof(double)) == 0; }

// Equal bits, except that any NaN matches any NaN: which operand's NaN an
// instruction passes on (its sign and payload) may differ between the vector
// and scalar paths, and a NaN is reported as not finite whatever its bits.
bool sameValues(const double* a, const double* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(double)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i]))) return false;
  }
  return true;
}


[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "vm_fuzz: contract violated: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

// Distinct outcomes (verifier messages with their numbers blanked, and how a
// run ended), for the driver's report and as its signal of new behaviour.
// Never destroyed: printOutcomes runs from an atexit handler registered
// before the map's first use, and static destructors run in reverse order of
// registration, so a static map would be gone by then (heap-use-after-free,
// found by the libFuzzer build).
std::map<std::string, uint64_t>& outcomes() {
  static auto* counts = new std::map<std::string, uint64_t>();
  return *counts;
}

// Counts an outcome with its numbers (decimal, or hex as in "0x4E4C4631") blanked to '#'.
void record(const std::string& outcome) {
  std::string key;
  for (size_t i = 0; i < outcome.size();) {
    if (outcome[i] < '0' || outcome[i] > '9') {
      key += outcome[i++];
      continue;
    }
    while (i < outcome.size() && (std::isxdigit(static_cast<unsigned char>(outcome[i])) || outcome[i] == 'x')) ++i;
    key += '#';
  }
  ++outcomes()[key];
}

// Checks that two results agree: a difference in NaN bits only is counted as an outcome, any other aborts.
void compareResults(const double* a, const double* b, size_t n, const char* what) {
  if (sameBits(a, b, n)) return;
  if (!sameValues(a, b, n)) violated(what);
  ++outcomes()[std::string("only NaN bits differ: ") + what];
}

// Names of the opcodes, for outcomes.
const char* const kOpNames[kOpCount] = {
    "const", "param", "var", "add", "sub", "mul", "div", "pow", "atan2", "min", "max", "neg",
    "exp", "log", "log10", "sqrt", "abs", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
    "cosh", "tanh", "powi", "lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not"};

void evaluateAndReduce(const std::shared_ptr<const Program>& program, const int32_t* code, uint8_t control, int rowsByte,
                       DataPool& pool) {
  const int width = kBlockWidths[(control >> 2) & 3];
  const int rows = rowsByte % (width + 1);
  const int64_t first = (control >> 4) & 3;
  const bool withSigma = (control >> 1) & 1;
  const int p = program->nParams();
  const int nVars = program->nVars();

  std::vector<double> theta(static_cast<size_t>(p));
  for (double& t : theta) t = pool.next();
  std::vector<std::vector<double>> values(static_cast<size_t>(nVars + 2), std::vector<double>(static_cast<size_t>(rows)));
  for (auto& column : values) {
    for (double& v : column) v = pool.next();
  }

  std::vector<double> nextTheta(theta.size());
  for (double& t : nextTheta) t = pool.next();

  const size_t aSize = static_cast<size_t>(width) * static_cast<size_t>(p + 1);
  Aligned A(aSize), again(aSize), replayed(aSize), fresh(aSize);
  std::vector<double> direct(static_cast<size_t>(rows) + 1);
  std::vector<double> kept;
  {
    BlockEvaluator evaluator(program, width, true);
    evaluator.setParams(theta.data());
    BlockData block = placeBlock(values, nVars, withSigma, first, rows);
    evaluator.evalBlock(block.columns, first, rows, A.p);
    kept.assign(evaluator.modelValues(), evaluator.modelValues() + rows);
    evaluator.evalValues(block.columns, first, rows, direct.data());
    // A second setParams only replays the coefficients of the compiled loops.
    evaluator.setParams(nextTheta.data());
    evaluator.evalBlock(block.columns, first, rows, replayed.p);
  }
  compareResults(kept.data(), direct.data(), static_cast<size_t>(rows), "evalBlock's kept model values differ from evalValues");
  {
    BlockEvaluator evaluator(program, width);
    evaluator.setParams(nextTheta.data());
    BlockData block = placeBlock(values, nVars, withSigma, first, rows);
    evaluator.evalBlock(block.columns, first, rows, fresh.p);
  }
  compareResults(replayed.p, fresh.p, aSize, "new parameters give other bits when replayed than when compiled afresh");
  for (int j = 0; j <= p; ++j) {
    const bool inMask = j == p || ((program->outputMask() >> j) & 1u);
    for (int i = inMask ? rows : 0; i < width; ++i) {
      if (!isPositiveZero(A.p[static_cast<size_t>(j) * width + i])) violated("a padded row or a column outside the output mask is not +0");
    }
  }
  {
    // Elsewhere in memory, through a fresh evaluator: the same bits.
    BlockEvaluator evaluator(program, width);
    evaluator.setParams(theta.data());
    const int64_t shifted = (first + 1) % 4;
    BlockData block = placeBlock(values, nVars, withSigma, shifted, rows);
    evaluator.evalBlock(block.columns, shifted, rows, again.p);
  }
  compareResults(A.p, again.p, aSize, "the block's bits depend on where its columns lie");

  const int q = p + 1;
  const size_t rSize = static_cast<size_t>(q) * static_cast<size_t>(q);
  std::vector<double> R(rSize), merged(rSize), second(rSize), root(rSize);
  try {
    blockFactor(A.p, q, R.data(), width);
  } catch (const ReductionError& e) {
    if (q <= width) violated("blockFactor refused a block wide enough for its columns");
    record(std::string("reduction refused: ") + e.what());
    return;
  }
  if (q > width) violated("blockFactor accepted more columns than rows");
  RangeReducer reducer(q);
  reducer.push(0, R.data());
  reducer.push(1, R.data());
  const std::vector<double> packed = reducer.packedRoots();
  finishTree({{packed.data(), static_cast<int64_t>(packed.size())}}, 2, q, root.data());
  merged = R;
  second = R;
  mergeFactors(merged.data(), second.data(), q);
  compareResults(root.data(), merged.data(), rSize, "the tree's root differs from one merge of the two factors");
  bool finite = true;
  for (double v : root) finite &= std::isfinite(v);
  record(finite ? "evaluated and reduced" : "evaluated and reduced, not finite");
  // Which opcodes ran at which width: the driver's signal of new ground in the evaluator.
  bool seen[kOpCount] = {};
  for (int i = 0; i < program->nInstr(); ++i) seen[code[kHeaderWords + i * kInstrWords]] = true;
  for (int op = 0; op < kOpCount; ++op) {
    if (seen[op]) ++outcomes()[std::string("evaluated ") + kOpNames[op] + " at width " + std::to_string(width)];
  }
}

void printOutcomes() {
  std::fprintf(stderr, "vm_fuzz: %zu distinct outcomes\n", outcomes().size());
  for (const auto& [outcome, count] : outcomes()) std::fprintf(stderr, "%12llu  %s\n", static_cast<unsigned long long>(count), outcome.c_str());
}

}  // namespace

// libFuzzer's own mutator (the standalone driver provides one too).
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t maxSize);

// Byte edits rarely leave a program valid, and only valid ones reach the
// evaluator and the reduction: a quarter of the mutations rewrite one
// instruction of a compact program into a well-formed one instead.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize, unsigned int seed) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  auto random = [&state](uint32_t n) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return n == 0 ? 0u : static_cast<uint32_t>(state % n);
  };
  const int nInstr = size >= 6 ? data[5] : 0;
  if ((data[0] & 1u) != 0 || nInstr == 0 || random(4) != 0) return LLVMFuzzerMutate(data, size, maxSize);
  const int i = static_cast<int>(random(static_cast<uint32_t>(nInstr)));
  const size_t at = 6 + 5 * static_cast<size_t>(i);
  if (at + 5 > size) return LLVMFuzzerMutate(data, size, maxSize);
  const int limits[3] = {data[4] % 17, data[2] % (kMaxParams + 2), data[3] % 10};  // consts, params, vars
  int32_t op = static_cast<int32_t>(random(i == 0 ? 3 : kOpCount));
  int32_t a = 0, b = 0;
  if (op <= kVar) {
    a = static_cast<int32_t>(random(static_cast<uint32_t>(limits[op])));
  } else {
    a = static_cast<int32_t>(random(static_cast<uint32_t>(i)));
    const bool binary = op <= kMax || (op >= kLt && op <= kOr);
    if (binary) b = static_cast<int32_t>(random(static_cast<uint32_t>(i)));
    if (op == kPowi) b = static_cast<int32_t>(random(2 * kMaxPowi + 1)) - kMaxPowi;
  }
  data[at] = static_cast<uint8_t>(op);
  for (int k = 0; k < 2; ++k) {
    data[at + 1 + k] = static_cast<uint8_t>(static_cast<uint32_t>(a) >> (8 * k));
    data[at + 3 + k] = static_cast<uint8_t>(static_cast<uint32_t>(b) >> (8 * k));
  }
  return size;
}

// The number of distinct outcomes so far: the standalone driver keeps an input
// that raises it, for want of coverage feedback.
extern "C" size_t NlfitFuzzOutcomeCount() { return outcomes().size(); }

// Prints every outcome with its count to stderr.
extern "C" void NlfitFuzzPrintOutcomes() { printOutcomes(); }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Under libFuzzer, NLFIT_FUZZ_OUTCOMES=1 prints the outcomes at exit.
  if (std::getenv("NLFIT_FUZZ_OUTCOMES") != nullptr) std::atexit(printOutcomes);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  const uint8_t control = in.u8();
  const int rowsByte = in.u8();
  DecodedProgram decoded = decodeProgram(in, control);
  DataPool pool(in);
  // Control bit 6 of a raw program: one word short, as a truncated buffer would be.
  const size_t nCode = decoded.code.size() - ((control & 1u) ? (control >> 6) & 1 : 0);
  const size_t nConsts = decoded.consts.size();
  // Copies of exactly the length given, so a read past either is an ASan report.
  std::unique_ptr<int32_t[]> code(new int32_t[nCode]);
  std::memcpy(code.get(), decoded.code.data(), nCode * sizeof(int32_t));
  std::unique_ptr<double[]> consts(nConsts == 0 ? nullptr : new double[nConsts]);
  if (nConsts > 0) std::memcpy(consts.get(), decoded.consts.data(), nConsts * sizeof(double));
  std::shared_ptr<const Program> program;
  try {
    program = Program::verify(code.get(), static_cast<int64_t>(nCode), consts.get(), static_cast<int64_t>(nConsts));
  } catch (const ProgramError& e) {
    record(std::string("rejected: ") + e.what());
    return 0;
  }
  evaluateAndReduce(program, code.get(), control, rowsByte, pool);
  return 0;
}
