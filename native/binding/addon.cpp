// N-API glue: turns JavaScript values into plain pointers and structs for the
// kernel (native/kernel, which knows nothing of N-API) and kernel exceptions
// into JavaScript errors. Every argument is checked here even though the
// TypeScript layer validated it already: a bad call must throw, never crash.
//
// State is per environment (Napi::Addon), so the addon can be loaded by the
// main thread and any number of worker threads at once.
#include <napi.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "../kernel/batch.hpp"
#include "../kernel/cancel.hpp"
#include "../kernel/columns.hpp"
#include "../kernel/layout.hpp"
#include "../kernel/loss.hpp"
#include "../kernel/lm.hpp"
#include "../kernel/program.hpp"
#include "../kernel/rowblocks.hpp"
#include "../kernel/tsqr.hpp"

namespace {

using nlfit::kBlockSize;

// The block QR keeps fixed-size scratch for kMaxFactorColumns columns: every
// model the verifier accepts must fit in it.
static_assert(nlfit::kMaxFactorColumns >= nlfit::kMaxParams + 1, "factor scratch smaller than the largest model");

// Runs a binding body, turning any C++ exception into a JavaScript error:
// node-addon-api only converts Napi::Error, anything else would terminate.
template <typename Body>
auto guarded(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::RangeError::New(env, "nlfit: out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("nlfit: ") + e.what());
  }
}

[[noreturn]] void throwType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}
[[noreturn]] void throwRange(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

Napi::Float64Array float64Arg(const Napi::Value& value, const char* name) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throwType(value.Env(), std::string("Expected Float64Array for ") + name);
  }
  return value.As<Napi::Float64Array>();
}

int64_t integerArg(const Napi::Value& value, const char* name, int64_t min, int64_t max) {
  if (!value.IsNumber()) throwType(value.Env(), std::string("Expected integer for ") + name);
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!(v == std::floor(v)) || v < static_cast<double>(min) || v > static_cast<double>(max)) {
    throwRange(value.Env(), std::string("Expected integer in [") + std::to_string(min) + ", " +
                                std::to_string(max) + "] for " + name);
  }
  return static_cast<int64_t>(v);
}

// extras.cancel of a pass or a batch: an Int32Array over a fit's cancel
// buffer (cancel.hpp: the word at kCancelFlagIndex, the deadline as a float64
// at byte kCancelDeadlineByte), or undefined/null for none. The array must
// stay referenced for the call (it is: it is one of the call's arguments).
nlfit::CancelCheck cancelArg(Napi::Env env, const Napi::Value& value) {
  if (value.IsUndefined() || value.IsNull()) return {};
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throwType(env, "Expected Int32Array (a fit's cancel buffer) for cancel");
  }
  const Napi::Int32Array words = value.As<Napi::Int32Array>();
  if (words.ElementLength() * sizeof(int32_t) < static_cast<size_t>(nlfit::kCancelBytes)) {
    throwRange(env, "cancel shorter than " + std::to_string(nlfit::kCancelBytes) + " bytes");
  }
  double deadlineMs = 0.0;
  std::memcpy(&deadlineMs, reinterpret_cast<const char*>(words.Data()) + nlfit::kCancelDeadlineByte, sizeof deadlineMs);
  if (std::isnan(deadlineMs)) throwRange(env, "Expected a number or Infinity for the cancel deadline but received NaN");
  return nlfit::CancelCheck(words.Data() + nlfit::kCancelFlagIndex, deadlineMs);
}

struct AlignedDeleter {
  void operator()(double* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<double, AlignedDeleter>;

AlignedBuffer alignedDoubles(size_t count) {
  const size_t bytes = ((count * sizeof(double) + nlfit::kAlign - 1) / nlfit::kAlign) * nlfit::kAlign;
  return AlignedBuffer(static_cast<double*>(std::aligned_alloc(nlfit::kAlign, bytes)));
}

// Column views of one call, checked against nPoints.
struct ColumnViews {
  std::vector<const double*> vars;
  nlfit::Columns columns;
};

ColumnViews columnViews(Napi::Env env, const nlfit::Program& program, const Napi::Value& varsValue,
                        const Napi::Value& yValue, const Napi::Value& sigmaValue, int64_t nPoints,
                        bool needResponse) {
  ColumnViews views;
  if (!varsValue.IsArray()) throwType(env, "Expected an array of Float64Array for vars");
  const Napi::Array vars = varsValue.As<Napi::Array>();
  if (static_cast<int>(vars.Length()) != program.nVars()) {
    throwRange(env, "Expected " + std::to_string(program.nVars()) + " variable columns but received " +
                        std::to_string(vars.Length()));
  }
  for (uint32_t v = 0; v < vars.Length(); ++v) {
    const Napi::Float64Array column = float64Arg(vars.Get(v), "a variable column");
    if (static_cast<int64_t>(column.ElementLength()) < nPoints) throwRange(env, "variable column shorter than the rows this call reads");
    views.vars.push_back(column.Data());
  }
  views.columns.vars = views.vars.data();
  views.columns.nVars = static_cast<int>(views.vars.size());
  if (needResponse) {
    const Napi::Float64Array y = float64Arg(yValue, "y");
    if (static_cast<int64_t>(y.ElementLength()) < nPoints) throwRange(env, "y shorter than the rows this call reads");
    views.columns.y = y.Data();
    if (!sigmaValue.IsNull() && !sigmaValue.IsUndefined()) {
      const Napi::Float64Array sigma = float64Arg(sigmaValue, "sigma");
      if (static_cast<int64_t>(sigma.ElementLength()) < nPoints) throwRange(env, "sigma shorter than the rows this call reads");
      views.columns.sigma = sigma.Data();
    }
  }
  return views;
}

// A verified program with the scratch to evaluate it on this thread.
class Kernel : public Napi::ObjectWrap<Kernel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Kernel",
                       {InstanceMethod<&Kernel::EvalRange>("evalRange"),
                        InstanceMethod<&Kernel::Predict>("predict"),
                        InstanceAccessor<&Kernel::NParams>("nParams"),
                        InstanceAccessor<&Kernel::NVars>("nVars")});
  }

  explicit Kernel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Kernel>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throwType(env, "Expected Int32Array for code");
    }
    const Napi::Int32Array code = info[0].As<Napi::Int32Array>();
    const Napi::Float64Array consts = float64Arg(info[1], "consts");
    try {
      program_ = nlfit::Program::verify(code.Data(), static_cast<int64_t>(code.ElementLength()), consts.Data(),
                                        static_cast<int64_t>(consts.ElementLength()));
    } catch (const nlfit::ProgramError& e) {
      throwRange(env, std::string("Invalid model program: ") + e.what());
    }
    guarded(env, [&]() {
      evaluator_ = std::make_unique<nlfit::BlockEvaluator>(program_);
      block_ = alignedDoubles(static_cast<size_t>(kBlockSize) * (program_->nParams() + 1));
      if (!block_) throw std::bad_alloc();
    });
    // The wrapper is a few bytes of JavaScript heap keeping tens of kilobytes of
    // scratch alive: tell V8, so a thread that builds many kernels collects
    // their wrappers early. The scratch itself is freed by the finalizer,
    // which Node runs from the thread's event loop (a pool worker must let its
    // loop turn between tasks: src/exec/engine.ts, atomics 'async').
    externalBytes_ = evaluator_->scratchBytes() + static_cast<int64_t>(sizeof(double) * kBlockSize * (program_->nParams() + 1)) +
                     static_cast<int64_t>(code.ElementLength() * sizeof(int32_t) * 8);
    int64_t adjusted = 0;
    napi_adjust_external_memory(env, externalBytes_, &adjusted);
  }

  void Finalize(Napi::Env env) override {
    // The C call, status ignored: a finalizer may run while a worker's
    // environment is being torn down, and a C++ exception here would terminate
    // the process (the C++ wrapper throws on a failed status).
    int64_t adjusted = 0;
    if (externalBytes_ > 0) napi_adjust_external_memory(env, -externalBytes_, &adjusted);
    externalBytes_ = 0;
  }

 private:
  void setParams(const Napi::Value& value) {
    const Napi::Float64Array params = float64Arg(value, "params");
    if (static_cast<int>(params.ElementLength()) != program_->nParams()) {
      throwRange(value.Env(), "Expected " + std::to_string(program_->nParams()) + " parameters but received " +
                                  std::to_string(params.ElementLength()));
    }
    evaluator_->setParams(params.Data());
  }

  // evalRange(params, vars, y, sigma|null, nPoints, blockStart, blockEnd[, extras])
  //   -> Float64Array of packed subtree roots (tsqr.hpp)
  // extras (an object, every field optional):
  //   moments   Float64Array of 3 * nBlocks, indexed by global block: each block
  //             is also checked and summarised into moments[3b..3b+2]
  //             (columns.hpp, blockMoments): the first pass audits the data.
  //   rowOffset a multiple of the block size, at most blockStart's first row:
  //             the global row of the columns' element 0 (a streamed chunk
  //             holds only its own rows; block numbers stay global).
  //   loss      0..4 (loss.hpp) with fScale > 0: rows are rescaled for the
  //             robust loss before their QR, and
  //   costs     Float64Array of nBlocks receives each block's cost
  //             0.5 * sum fScale^2 rho(z) (required with a loss other than 0).
  //   cancel    Int32Array over the fit's cancel buffer (cancel.hpp), asked
  //             before every block: once it says stop, evalRange returns
  //             null instead of the roots (the pass is to be dropped).
  Napi::Value EvalRange(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      const int64_t nPoints = integerArg(info[4], "nPoints", 1, int64_t{1} << 52);
      const int64_t nBlocks = nlfit::blockCount(nPoints);
      const int64_t blockStart = integerArg(info[5], "blockStart", 0, nBlocks - 1);
      const int64_t blockEnd = integerArg(info[6], "blockEnd", blockStart + 1, nBlocks);
      int64_t rowOffset = 0;
      double* moments = nullptr;
      double* costs = nullptr;
      nlfit::Loss loss = nlfit::Loss::Linear;
      double fScale = 1.0;
      nlfit::CancelCheck cancel;
      if (info.Length() > 7 && !info[7].IsUndefined() && !info[7].IsNull()) {
        if (!info[7].IsObject()) throwType(env, "Expected an object for evalRange extras");
        const Napi::Object extras = info[7].As<Napi::Object>();
        cancel = cancelArg(env, extras.Get("cancel"));
        const Napi::Value offset = extras.Get("rowOffset");
        if (!offset.IsUndefined()) {
          rowOffset = integerArg(offset, "rowOffset", 0, blockStart * kBlockSize);
          if (rowOffset % kBlockSize != 0) throwRange(env, "rowOffset is not a multiple of the block size");
        }
        const Napi::Value m = extras.Get("moments");
        if (!m.IsUndefined() && !m.IsNull()) {
          Napi::Float64Array array = float64Arg(m, "moments");
          if (static_cast<int64_t>(array.ElementLength()) < 3 * nBlocks) throwRange(env, "moments shorter than 3 * nBlocks");
          moments = array.Data();
        }
        const Napi::Value l = extras.Get("loss");
        if (!l.IsUndefined()) {
          loss = static_cast<nlfit::Loss>(integerArg(l, "loss", 0, nlfit::kLossCount - 1));
          const Napi::Value scale = extras.Get("fScale");
          if (!scale.IsUndefined()) {
            if (!scale.IsNumber()) throwType(env, "Expected number for fScale");
            fScale = scale.As<Napi::Number>().DoubleValue();
            if (!(fScale > 0.0) || !std::isfinite(fScale)) throwRange(env, "Expected a finite number > 0 for fScale");
          }
        }
        const Napi::Value c = extras.Get("costs");
        if (!c.IsUndefined() && !c.IsNull()) {
          Napi::Float64Array array = float64Arg(c, "costs");
          if (static_cast<int64_t>(array.ElementLength()) < nBlocks) throwRange(env, "costs shorter than nBlocks");
          costs = array.Data();
        }
        if (loss != nlfit::Loss::Linear && costs == nullptr) throwRange(env, "a robust loss needs a costs array");
      }
      const int64_t rowsRead = std::min<int64_t>(nPoints, blockEnd * kBlockSize) - rowOffset;
      const ColumnViews views = columnViews(env, *program_, info[1], info[2], info[3], rowsRead, true);
      setParams(info[0]);
      const int q = program_->nParams() + 1;
      nlfit::RangeReducer reducer(q);
      std::vector<double> R(static_cast<size_t>(q) * q);
      for (int64_t b = blockStart; b < blockEnd; ++b) {
        if (cancel.stop()) return env.Null();
        const int64_t first = b * kBlockSize;
        const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, nPoints - first));
        if (moments) nlfit::blockMoments(views.columns, first - rowOffset, rows, moments + 3 * b);
        evaluator_->evalBlock(views.columns, first - rowOffset, rows, block_.get());
        if (costs) costs[b] = nlfit::applyLoss(loss, fScale, block_.get(), rows, q);
        nlfit::blockFactor(block_.get(), q, R.data());
        reducer.push(b, R.data());
      }
      const std::vector<double> packed = reducer.packedRoots();
      Napi::Float64Array out = Napi::Float64Array::New(env, packed.size());
      std::memcpy(out.Data(), packed.data(), packed.size() * sizeof(double));
      return out;
    });
  }

  // predict(params, vars, start, count, out): model values for points [start, start+count)
  Napi::Value Predict(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      const int64_t start = integerArg(info[2], "start", 0, int64_t{1} << 52);
      const int64_t count = integerArg(info[3], "count", 0, int64_t{1} << 52);
      Napi::Float64Array out = float64Arg(info[4], "out");
      if (static_cast<int64_t>(out.ElementLength()) < count) throwRange(env, "out shorter than count");
      const ColumnViews views = columnViews(env, *program_, info[1], env.Null(), env.Null(), start + count, false);
      setParams(info[0]);
      for (int64_t done = 0; done < count; done += kBlockSize) {
        const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, count - done));
        evaluator_->evalValues(views.columns, start + done, rows, out.Data() + done);
      }
      return env.Undefined();
    });
  }

  Napi::Value NParams(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), program_->nParams()); }
  Napi::Value NVars(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), program_->nVars()); }

  std::shared_ptr<const nlfit::Program> program_;
  std::unique_ptr<nlfit::BlockEvaluator> evaluator_;
  AlignedBuffer block_;
  int64_t externalBytes_ = 0;
};

// Solver options for p parameters (lm.hpp, LMOptions).
nlfit::LMOptions lmOptions(Napi::Env env, const Napi::Value& value, size_t p) {
  nlfit::LMOptions options;
  if (value.IsUndefined()) return options;
  if (!value.IsObject()) throwType(env, "Expected an object for solver options");
  const Napi::Object o = value.As<Napi::Object>();
  auto number = [&](const char* key, double& target) {
    const Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return;
    if (!v.IsNumber()) throwType(env, std::string("Expected number for ") + key);
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0.0) || !std::isfinite(d)) throwRange(env, std::string("Expected a finite number >= 0 for ") + key);
    target = d;
  };
  number("ftol", options.ftol);
  number("xtol", options.xtol);
  number("gtol", options.gtol);
  number("factor", options.factor);
  const Napi::Value maxFev = o.Get("maxFev");
  if (!maxFev.IsUndefined()) options.maxFev = integerArg(maxFev, "maxFev", 1, int64_t{1} << 40);
  if (!(options.factor > 0.0)) throwRange(env, "Expected a number > 0 for factor");
  // Bounds: undefined or null means none; else a Float64Array or an array of
  // numbers, p long, each a number or +-Infinity (not NaN).
  auto bounds = [&](const char* key) -> std::vector<double> {
    const Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return {};
    std::vector<double> values;
    if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
      const Napi::Float64Array array = v.As<Napi::Float64Array>();
      values.assign(array.Data(), array.Data() + array.ElementLength());
    } else if (v.IsArray()) {
      const Napi::Array array = v.As<Napi::Array>();
      for (uint32_t j = 0; j < array.Length(); ++j) {
        const Napi::Value e = array.Get(j);
        if (!e.IsNumber()) {
          static const char* const kTypeNames[] = {"undefined", "null",   "boolean",  "number",
                                                   "string",    "symbol", "object",   "function",
                                                   "external",  "bigint"};
          const int t = static_cast<int>(e.Type());
          const char* type = t >= 0 && t < 10 ? kTypeNames[t] : "unknown";
          throwType(env, std::string("Expected number for ") + key + "[" + std::to_string(j) +
                             "] but received a value of type " + type);
        }
        values.push_back(e.As<Napi::Number>().DoubleValue());
      }
    } else {
      throwType(env, std::string("Expected Float64Array or array of numbers for ") + key);
    }
    if (values.size() != p) {
      throwRange(env, "Expected " + std::to_string(p) + " values for " + key + " (one per parameter) but received " +
                          std::to_string(values.size()));
    }
    for (size_t j = 0; j < p; ++j) {
      if (std::isnan(values[j])) {
        throwRange(env, std::string("Expected a number for ") + key + "[" + std::to_string(j) + "] but received NaN");
      }
    }
    return values;
  };
  // A bound as JavaScript prints it (3, 0.5, -Infinity).
  auto text = [&](double v) { return Napi::Number::New(env, v).ToString().Utf8Value(); };
  options.lower = bounds("lower");
  options.upper = bounds("upper");
  // Fixed variable scaling D (lm.hpp): p finite values > 0.
  options.diag = bounds("diag");
  for (size_t j = 0; j < options.diag.size(); ++j) {
    if (!(options.diag[j] > 0.0) || !std::isfinite(options.diag[j])) {
      throwRange(env, "Expected a finite number > 0 for diag[" + std::to_string(j) + "] but received " + text(options.diag[j]));
    }
  }
  const double inf = HUGE_VAL;
  for (size_t j = 0; j < p; ++j) {
    const double l = options.lower.empty() ? -inf : options.lower[j];
    const double u = options.upper.empty() ? inf : options.upper[j];
    const std::string index = "[" + std::to_string(j) + "]";
    if (l == inf) throwRange(env, "Expected lower" + index + " < Infinity but received Infinity");
    if (u == -inf) throwRange(env, "Expected upper" + index + " > -Infinity but received -Infinity");
    if (l > u) {
      throwRange(env, "Expected lower" + index + " <= upper" + index + " but received " + text(l) + " > " + text(u));
    }
    if (l == u) {
      throwRange(env, "Expected lower" + index + " < upper" + index + " but received " + text(l) + " = " + text(u) +
                          " (a parameter that cannot move must be fixed, not bounded)");
    }
  }
  return options;
}

Napi::Float64Array copyOut(Napi::Env env, const double* values, size_t n) {
  Napi::Float64Array out = Napi::Float64Array::New(env, n);
  if (n) std::memcpy(out.Data(), values, n * sizeof(double));
  return out;
}

// The Levenberg-Marquardt state machine (lm.hpp), pumped from TypeScript.
class Solver : public Napi::ObjectWrap<Solver> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Solver",
                       {InstanceMethod<&Solver::Ask>("ask"), InstanceMethod<&Solver::Tell>("tell"),
                        InstanceMethod<&Solver::Abort>("abort"), InstanceMethod<&Solver::State>("state"),
                        InstanceMethod<&Solver::Serialize>("serialize"),
                        StaticMethod<&Solver::Restore>("restore")});
  }

  // new Solver(x0: Float64Array, options?)
  // options: ftol, xtol, gtol, factor, maxFev, and lower, upper (Float64Array
  // or number[] of x0.length; -Infinity / Infinity leave a side open). A
  // start outside the bounds is moved inside (lm.hpp, feasibleStart).
  // new Solver(state: Uint8Array) restores a serialize() blob (Solver.restore).
  explicit Solver(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Solver>(info) {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
      const Napi::Uint8Array state = info[0].As<Napi::Uint8Array>();
      guarded(env, [&]() {
        try {
          lm_ = std::make_unique<nlfit::LevenbergMarquardt>(
              nlfit::LevenbergMarquardt::restore(state.Data(), state.ElementLength()));
        } catch (const std::invalid_argument& e) {
          throwRange(env, std::string("nlfit: ") + e.what());
        }
      });
      return;
    }
    const Napi::Float64Array x0 = float64Arg(info[0], "x0");
    if (x0.ElementLength() < 1 || x0.ElementLength() > static_cast<size_t>(nlfit::kMaxParams)) {
      throwRange(env, "Expected between 1 and " + std::to_string(nlfit::kMaxParams) + " parameters");
    }
    for (size_t j = 0; j < x0.ElementLength(); ++j) {
      if (!std::isfinite(x0[j])) throwRange(env, "Expected finite starting parameters");
    }
    const nlfit::LMOptions options = lmOptions(env, info.Length() > 1 ? info[1] : env.Undefined(), x0.ElementLength());
    guarded(env, [&]() {
      lm_ = std::make_unique<nlfit::LevenbergMarquardt>(static_cast<int>(x0.ElementLength()), x0.Data(), options);
    });
  }

 private:
  // ask() -> Float64Array of the parameters to evaluate, or null when done
  Napi::Value Ask(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (!lm_->running()) return info.Env().Null();
      return copyOut(info.Env(), lm_->ask(), lm_->p());
    });
  }

  // tell(R: Float64Array of (p+1)^2)
  Napi::Value Tell(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Napi::Float64Array R = float64Arg(info[0], "R");
      const size_t q = static_cast<size_t>(lm_->p()) + 1;
      if (R.ElementLength() != q * q) throwRange(info.Env(), "Expected a factor of " + std::to_string(q * q) + " values");
      // Optional fnorm (a robust loss: sqrt(2 * cost)); NaN or Infinity marks the point invalid.
      double fnorm = -1.0;
      if (info.Length() > 1 && !info[1].IsUndefined()) {
        if (!info[1].IsNumber()) throwType(info.Env(), "Expected number for fnorm");
        fnorm = info[1].As<Napi::Number>().DoubleValue();
        if (fnorm < 0.0) throwRange(info.Env(), "Expected fnorm >= 0");
        if (std::isnan(fnorm)) fnorm = std::numeric_limits<double>::infinity();
      }
      lm_->tell(R.Data(), fnorm);
      return info.Env().Undefined();
    });
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    lm_->abort();
    return info.Env().Undefined();
  }

  // serialize() -> Uint8Array: the whole machine (lm.hpp, the format in lm.cpp)
  Napi::Value Serialize(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const std::vector<uint8_t> state = lm_->serialize();
      Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), state.size());
      std::memcpy(out.Data(), state.data(), state.size());
      return out;
    });
  }

  // Solver.restore(state: Uint8Array) -> Solver that continues exactly where
  // the serialised one was. RangeError naming the problem for a blob that is
  // truncated, corrupt, of another version or not a solver state.
  static Napi::Value Restore(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throwType(env, "Expected Uint8Array for state");
    }
    if (!info.This().IsFunction()) throwType(env, "Solver.restore must be called as Solver.restore(state)");
    return info.This().As<Napi::Function>().New({info[0]});
  }

  Napi::Value State(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      Napi::Object o = Napi::Object::New(env);
      const nlfit::LMStatus status = lm_->status();
      o.Set("running", lm_->running());
      o.Set("status", nlfit::lmStatusName(status));
      o.Set("success", nlfit::lmSucceeded(status));
      o.Set("message", nlfit::lmStatusMessage(status, lm_->options()));
      o.Set("x", copyOut(env, lm_->x().data(), lm_->x().size()));
      o.Set("fnorm", lm_->fnorm());
      o.Set("damping", lm_->damping());
      o.Set("iterations", static_cast<double>(lm_->iterations()));
      o.Set("nfev", static_cast<double>(lm_->nfev()));
      o.Set("njev", static_cast<double>(lm_->njev()));
      o.Set("nonFiniteTrials", static_cast<double>(lm_->nonFiniteTrials()));
      o.Set("maxFev", static_cast<double>(lm_->options().maxFev));
      o.Set("factor", copyOut(env, lm_->factor().data(), lm_->factor().size()));
      // Per parameter at x: 0 free, 1 on its lower bound, 2 on its upper
      // bound (active: the gradient does not point into the box).
      const std::vector<uint8_t> mask = lm_->activeMask();
      Napi::Uint8Array activeMask = Napi::Uint8Array::New(env, mask.size());
      if (!mask.empty()) std::memcpy(activeMask.Data(), mask.data(), mask.size());
      o.Set("activeMask", activeMask);
      return o;
    });
  }

  std::unique_ptr<nlfit::LevenbergMarquardt> lm_;
};

// ---- fitBatch -----------------------------------------------------------------

// What a value is, for messages: "number 1.5", "string", "undefined".
std::string describeValue(const Napi::Value& v) {
  if (v.IsNumber()) return "number " + v.ToString().Utf8Value();
  if (v.IsBoolean()) return std::string("boolean ") + (v.As<Napi::Boolean>().Value() ? "true" : "false");
  if (v.IsNull()) return "null";
  if (v.IsUndefined()) return "undefined";
  if (v.IsTypedArray()) {
    static const char* const kNames[] = {"Int8Array",   "Uint8Array",   "Uint8ClampedArray", "Int16Array",
                                         "Uint16Array", "Int32Array",   "Uint32Array",       "Float32Array",
                                         "Float64Array", "BigInt64Array", "BigUint64Array"};
    const int t = static_cast<int>(v.As<Napi::TypedArray>().TypedArrayType());
    return t >= 0 && t < 11 ? kNames[t] : "a typed array";
  }
  if (v.IsArray()) return "an array";
  if (v.IsString()) return "a string";
  if (v.IsFunction()) return "a function";
  return "an object";
}

// The fields of a fitBatch spec, each checked as it is read; every message
// names the field: "fitBatch: Expected Float64Array for spec.y but received
// undefined".
class SpecReader {
 public:
  SpecReader(Napi::Env env, Napi::Object spec, std::string prefix) : env_(env), spec_(spec), prefix_(std::move(prefix)) {}

  bool has(const char* key) const {
    const Napi::Value v = spec_.Get(key);
    return !v.IsUndefined() && !v.IsNull();
  }
  Napi::Value get(const char* key) const { return spec_.Get(key); }
  [[noreturn]] void typeError(const char* key, const char* expected, const Napi::Value& v) const {
    throwType(env_, "fitBatch: Expected " + std::string(expected) + " for " + name(key) + " but received " +
                        describeValue(v));
  }
  [[noreturn]] void rangeError(const char* key, const std::string& what) const {
    throwRange(env_, "fitBatch: " + name(key) + " " + what);
  }
  std::string name(const char* key) const { return prefix_ + key; }

  template <typename Array>
  Array typed(const char* key, napi_typedarray_type type, const char* typeName) const {
    const Napi::Value v = spec_.Get(key);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) typeError(key, typeName, v);
    return v.As<Array>();
  }
  Napi::Float64Array float64(const char* key) const {
    return typed<Napi::Float64Array>(key, napi_float64_array, "Float64Array");
  }
  // A Float64Array of exactly `length` values.
  Napi::Float64Array float64(const char* key, int64_t length, const char* what) const {
    Napi::Float64Array a = float64(key);
    if (static_cast<int64_t>(a.ElementLength()) != length) {
      rangeError(key, "has " + std::to_string(a.ElementLength()) + " values, expected " + std::to_string(length) + " (" +
                          what + ")");
    }
    return a;
  }
  double number(const char* key) const {
    const Napi::Value v = spec_.Get(key);
    if (!v.IsNumber()) typeError(key, "number", v);
    return v.As<Napi::Number>().DoubleValue();
  }
  double finiteAtLeast(const char* key, double min, bool strict) const {
    const double d = number(key);
    if (!std::isfinite(d) || (strict ? !(d > min) : !(d >= min))) {
      rangeError(key, std::string("must be a finite number ") + (strict ? "> " : ">= ") + shortText(min) +
                          " but is " + shortText(d));
    }
    return d;
  }
  int64_t integer(const char* key, int64_t min, int64_t max) const {
    const double d = number(key);
    if (!(d == std::floor(d)) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
      rangeError(key, "must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "] but is " +
                          shortText(d));
    }
    return static_cast<int64_t>(d);
  }
  bool boolean(const char* key, bool fallback) const {
    const Napi::Value v = spec_.Get(key);
    if (v.IsUndefined()) return fallback;
    if (!v.IsBoolean()) typeError(key, "boolean", v);
    return v.As<Napi::Boolean>().Value();
  }

 private:
  std::string shortText(double d) const { return Napi::Number::New(env_, d).ToString().Utf8Value(); }
  Napi::Env env_;
  Napi::Object spec_;
  std::string prefix_;
};

// fitBatch(spec) -> boolean. Fits curves [spec.curveStart, spec.curveEnd)
// of a batch (native/kernel/batch.hpp) and writes their results into
// spec.out in place (the arrays may be views of SharedArrayBuffers that
// several workers fill, each its own curve range). Synchronous: call it from
// a worker thread. The spec (M curves, p = nParams):
//   code: Int32Array, consts: Float64Array   the model (bytecode.hpp); verified on every call
//   nParams       p, as the program declares it
//   x             array of Float64Array, one per model variable: shared by
//                 every curve (at least the longest curve's length), or with
//   xPerCurve     true, laid out like y
//   y             Float64Array of every curve's points back to back
//   offsets       Float64Array of M + 1 nondecreasing integers: curve c is
//                 y[offsets[c], offsets[c+1]); or, without offsets,
//   n             points per curve (M = y.length / n)
//   sigma         optional Float64Array laid out like y (not with estimator 1)
//   p0            Float64Array of p (shared) or M * p values
//   lower, upper  optional Float64Array of p (shared) or M * p values each
//                 (the same layout when both are given); +-Infinity for none
//   loss          optional 0..4 (loss.hpp) with fScale > 0 (default 1)
//   estimator     optional 0 (least squares, default) or 1 (Poisson maximum likelihood)
//   ftol, xtol, gtol  finite numbers >= 0; maxFev integer >= 1; factor finite > 0
//   absoluteSigma optional boolean (default false)
//   curveStart, curveEnd   0 <= curveStart <= curveEnd <= M
//   cancel        optional Int32Array over the fit's cancel buffer
//                 (cancel.hpp), asked before each curve
//   out           { params, stderr: Float64Array (M * p); chi2, iterations,
//                 nfev: Float64Array (M); status: Uint8Array (M) }; status
//                 codes are indices into batchStatusNames.
// Returns true when every curve of the range was fitted, false when cancel
// stopped the call first (the curves before the stop are written, the rest
// not). TypeError for a field of the wrong type, RangeError for a wrong value
// or size (and an invalid program); both name the field.
bool fitBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray() || info[0].IsTypedArray()) {
    throwType(env, "fitBatch: Expected an object (the batch spec) but received " +
                       (info.Length() < 1 ? std::string("no argument") : describeValue(info[0])));
  }
  const SpecReader spec(env, info[0].As<Napi::Object>(), "spec.");

  // The model.
  const Napi::Int32Array code = spec.typed<Napi::Int32Array>("code", napi_int32_array, "Int32Array");
  const Napi::Float64Array consts = spec.float64("consts");
  nlfit::BatchProblem problem;
  try {
    problem.program = nlfit::Program::verify(code.Data(), static_cast<int64_t>(code.ElementLength()), consts.Data(),
                                             static_cast<int64_t>(consts.ElementLength()));
  } catch (const nlfit::ProgramError& e) {
    throwRange(env, std::string("fitBatch: invalid model program: ") + e.what());
  }
  const int p = problem.program->nParams();
  const int64_t nParams = spec.integer("nParams", 1, nlfit::kMaxParams);
  if (nParams != p) {
    spec.rangeError("nParams", "is " + std::to_string(nParams) + " but the program has " + std::to_string(p) + " parameters");
  }

  // The curves.
  const Napi::Float64Array y = spec.float64("y");
  problem.y = y.Data();
  problem.yLength = static_cast<int64_t>(y.ElementLength());
  if (spec.has("offsets")) {
    const Napi::Float64Array offsets = spec.float64("offsets");
    if (offsets.ElementLength() < 1) spec.rangeError("offsets", "is empty: expected M + 1 values");
    problem.offsets = offsets.Data();
    problem.nCurves = static_cast<int64_t>(offsets.ElementLength()) - 1;
  } else {
    const int64_t n = spec.integer("n", 1, int64_t{1} << 52);
    if (problem.yLength % n != 0) {
      spec.rangeError("y", "has " + std::to_string(problem.yLength) + " values, not a whole number of curves of n = " +
                               std::to_string(n) + " points");
    }
    problem.pointsPerCurve = n;
    problem.nCurves = problem.yLength / n;
  }
  const int64_t m = problem.nCurves;
  const int64_t curveStart = spec.integer("curveStart", 0, m);
  const int64_t curveEnd = spec.integer("curveEnd", curveStart, m);
  // The longest curve of the range, which a shared x must cover (the kernel
  // checks the offsets themselves).
  int64_t longest = problem.pointsPerCurve;
  if (problem.offsets != nullptr) {
    longest = 0;
    for (int64_t c = curveStart; c < curveEnd; ++c) {
      const double d = problem.offsets[c + 1] - problem.offsets[c];
      if (!(d >= 0.0)) {
        spec.rangeError("offsets", "must be nondecreasing but offsets[" + std::to_string(c + 1) + "] is below offsets[" +
                                       std::to_string(c) + "]");
      }
      if (d > static_cast<double>(longest) && d <= static_cast<double>(problem.yLength)) longest = static_cast<int64_t>(d);
    }
  }
  problem.xPerCurve = spec.boolean("xPerCurve", false);
  const Napi::Value xValue = spec.get("x");
  if (!xValue.IsArray()) spec.typeError("x", "an array of Float64Array", xValue);
  const Napi::Array xArray = xValue.As<Napi::Array>();
  if (static_cast<int>(xArray.Length()) != problem.program->nVars()) {
    spec.rangeError("x", "has " + std::to_string(xArray.Length()) + " columns but the model reads " +
                             std::to_string(problem.program->nVars()) + " variables");
  }
  std::vector<const double*> xColumns;
  for (uint32_t v = 0; v < xArray.Length(); ++v) {
    const std::string key = "x[" + std::to_string(v) + "]";
    const Napi::Value column = xArray.Get(v);
    if (!column.IsTypedArray() || column.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      spec.typeError(key.c_str(), "Float64Array", column);
    }
    const Napi::Float64Array a = column.As<Napi::Float64Array>();
    const int64_t length = static_cast<int64_t>(a.ElementLength());
    if (problem.xPerCurve ? length != problem.yLength : length < longest) {
      spec.rangeError(key.c_str(), "has " + std::to_string(length) + " values, expected " +
                                       (problem.xPerCurve ? std::to_string(problem.yLength) + " (per curve: laid out like y)"
                                                          : "at least " + std::to_string(longest) +
                                                                " (shared: the longest curve of the range)"));
    }
    xColumns.push_back(a.Data());
  }
  problem.x = xColumns.data();
  problem.nVars = static_cast<int>(xColumns.size());
  if (spec.has("sigma")) problem.sigma = spec.float64("sigma", problem.yLength, "laid out like y").Data();

  // Starts and bounds: p values (shared) or M * p.
  auto perCurveLength = [&](const char* key, const Napi::Float64Array& a) -> bool {
    const int64_t length = static_cast<int64_t>(a.ElementLength());
    if (length == p) return false;
    if (length == m * p) return true;
    spec.rangeError(key, "has " + std::to_string(length) + " values, expected " + std::to_string(p) +
                             " (shared) or " + std::to_string(m * p) + " (M x p, one row per curve)");
  };
  const Napi::Float64Array p0 = spec.float64("p0");
  problem.p0PerCurve = perCurveLength("p0", p0);
  problem.p0 = p0.Data();
  if (spec.has("lower")) {
    const Napi::Float64Array lower = spec.float64("lower");
    problem.boundsPerCurve = perCurveLength("lower", lower);
    problem.lower = lower.Data();
  }
  if (spec.has("upper")) {
    const Napi::Float64Array upper = spec.float64("upper");
    const bool perCurve = perCurveLength("upper", upper);
    if (problem.lower != nullptr && perCurve != problem.boundsPerCurve) {
      spec.rangeError("upper", "must have the layout of lower (both shared or both M x p)");
    }
    problem.boundsPerCurve = perCurve;
    problem.upper = upper.Data();
  }

  // Options.
  if (spec.has("loss")) {
    problem.loss = static_cast<nlfit::Loss>(spec.integer("loss", 0, nlfit::kLossCount - 1));
    if (spec.has("fScale")) problem.fScale = spec.finiteAtLeast("fScale", 0.0, true);
  }
  if (spec.has("estimator")) problem.estimator = static_cast<nlfit::Estimator>(spec.integer("estimator", 0, 1));
  if (problem.estimator == nlfit::Estimator::Poisson) {
    if (problem.sigma != nullptr) spec.rangeError("sigma", "is not allowed with estimator 1 (Poisson): the model is the variance");
    if (problem.loss != nlfit::Loss::Linear) spec.rangeError("loss", "must be 0 (linear) with estimator 1 (Poisson)");
  }
  problem.ftol = spec.finiteAtLeast("ftol", 0.0, false);
  problem.xtol = spec.finiteAtLeast("xtol", 0.0, false);
  problem.gtol = spec.finiteAtLeast("gtol", 0.0, false);
  problem.factor = spec.finiteAtLeast("factor", 0.0, true);
  problem.maxFev = spec.integer("maxFev", 1, int64_t{1} << 40);
  problem.absoluteSigma = spec.boolean("absoluteSigma", false);
  nlfit::CancelCheck cancel = cancelArg(env, spec.get("cancel"));
  problem.cancel = &cancel;

  // The output.
  const Napi::Value outValue = spec.get("out");
  if (!outValue.IsObject() || outValue.IsArray() || outValue.IsTypedArray()) spec.typeError("out", "an object", outValue);
  const SpecReader out(env, outValue.As<Napi::Object>(), "spec.out.");
  nlfit::BatchOutput output;
  output.params = out.float64("params", m * p, "M x p").Data();
  output.stdErrors = out.float64("stderr", m * p, "M x p").Data();
  output.chi2 = out.float64("chi2", m, "one per curve").Data();
  output.iterations = out.float64("iterations", m, "one per curve").Data();
  output.nfev = out.float64("nfev", m, "one per curve").Data();
  Napi::Uint8Array status = out.typed<Napi::Uint8Array>("status", napi_uint8_array, "Uint8Array");
  if (static_cast<int64_t>(status.ElementLength()) != m) {
    out.rangeError("status", "has " + std::to_string(status.ElementLength()) + " values, expected " + std::to_string(m) +
                                 " (one per curve)");
  }
  output.status = status.Data();

  return guarded(env, [&]() -> bool {
    try {
      return nlfit::fitCurves(problem, curveStart, curveEnd, output) == curveEnd - curveStart;
    } catch (const std::invalid_argument& e) {
      // The kernel names itself; here the caller knows it as fitBatch.
      const std::string message = e.what();
      const std::string kernelName = "fitCurves: ";
      throwRange(env, "fitBatch: " + (message.rfind(kernelName, 0) == 0 ? message.substr(kernelName.size()) : message));
    }
  });
}

// batchStatusNames[code]: the name of a fitBatch status code.
Napi::Array batchStatusNames(Napi::Env env) {
  Napi::Array names = Napi::Array::New(env, nlfit::kBatchStatusCount);
  for (int s = 0; s < nlfit::kBatchStatusCount; ++s) names.Set(static_cast<uint32_t>(s), nlfit::batchStatusName(s));
  return names;
}

class NlfitAddon : public Napi::Addon<NlfitAddon> {
 public:
  NlfitAddon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {InstanceValue("Kernel", Kernel::Define(env), napi_enumerable),
                          InstanceValue("Solver", Solver::Define(env), napi_enumerable),
                          InstanceMethod<&NlfitAddon::FinishTree>("finishTree", napi_enumerable),
                          InstanceMethod<&NlfitAddon::Covariance>("covariance", napi_enumerable),
                          InstanceMethod<&NlfitAddon::FirstNonFinite>("firstNonFinite", napi_enumerable),
                          InstanceMethod<&NlfitAddon::ScanResponse>("scanResponse", napi_enumerable),
                          InstanceMethod<&NlfitAddon::MergeMoments>("mergeMoments", napi_enumerable),
                          InstanceMethod<&NlfitAddon::ReduceBlocks>("reduceBlocks", napi_enumerable),
                          InstanceMethod<&NlfitAddon::FitBatch>("fitBatch", napi_enumerable),
                          InstanceMethod<&NlfitAddon::MonotonicMs>("monotonicMs", napi_enumerable),
                          InstanceMethod<&NlfitAddon::ReleaseFreeMemory>("releaseFreeMemory", napi_enumerable),
                          InstanceValue("batchStatusNames", batchStatusNames(env), napi_enumerable),
                          InstanceValue("blockSize", Napi::Number::New(env, kBlockSize), napi_enumerable),
                          InstanceValue("layoutVersion", Napi::Number::New(env, nlfit::kLayoutVersion), napi_enumerable),
                          InstanceValue("bytecodeVersion", Napi::Number::New(env, nlfit::kVersion), napi_enumerable),
                          InstanceValue("cancelFlagIndex", Napi::Number::New(env, nlfit::kCancelFlagIndex), napi_enumerable),
                          InstanceValue("cancelDeadlineByte", Napi::Number::New(env, nlfit::kCancelDeadlineByte), napi_enumerable),
                          InstanceValue("cancelBytes", Napi::Number::New(env, nlfit::kCancelBytes), napi_enumerable)});
  }

 private:
  Napi::Value FitBatch(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fitBatch(info)); }

  // releaseFreeMemory() -> whether the allocator was asked to return freed
  // memory to the system. glibc keeps freed heap memory below the top of an
  // arena resident (a fit's transient buffers under the mmap threshold: tens
  // of MB after large fits or batches); malloc_trim(0) returns it, from every
  // arena. Other C libraries: nothing to do here (false).
  Napi::Value ReleaseFreeMemory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
    malloc_trim(0);
    return Napi::Boolean::New(info.Env(), true);
#else
    return Napi::Boolean::New(info.Env(), false);
#endif
  }

  // monotonicMs() -> ms on the clock of cancel deadlines (cancel.hpp, steadyMs):
  // one clock for every thread of the process.
  Napi::Value MonotonicMs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), nlfit::steadyMs()); }

  // firstNonFinite(values: Float64Array) -> index or -1
  Napi::Value FirstNonFinite(const Napi::CallbackInfo& info) {
    const Napi::Float64Array values = float64Arg(info[0], "values");
    return Napi::Number::New(info.Env(), static_cast<double>(nlfit::firstNonFinite(
                                             values.Data(), static_cast<int64_t>(values.ElementLength()))));
  }

  // scanResponse(y: Float64Array, sigma: Float64Array | null)
  //   -> { firstInvalidY, firstInvalidSigma, totalSumOfSquares }
  Napi::Value ScanResponse(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Napi::Float64Array y = float64Arg(info[0], "y");
    const double* sigma = nullptr;
    if (!info[1].IsNull() && !info[1].IsUndefined()) {
      const Napi::Float64Array s = float64Arg(info[1], "sigma");
      if (s.ElementLength() != y.ElementLength()) throwRange(env, "sigma and y differ in length");
      sigma = s.Data();
    }
    const nlfit::ResponseScan scan = nlfit::scanResponse(y.Data(), sigma, static_cast<int64_t>(y.ElementLength()));
    Napi::Object o = Napi::Object::New(env);
    o.Set("firstInvalidY", static_cast<double>(scan.firstInvalidY));
    o.Set("firstInvalidSigma", static_cast<double>(scan.firstInvalidSigma));
    o.Set("totalSumOfSquares", scan.totalSumOfSquares);
    return o;
  }

  // mergeMoments(moments: Float64Array, nBlocks) -> { firstInvalidBlock, totalSumOfSquares }
  Napi::Value MergeMoments(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      const Napi::Float64Array moments = float64Arg(info[0], "moments");
      const int64_t nBlocks = integerArg(info[1], "nBlocks", 1, int64_t{1} << 52);
      if (static_cast<int64_t>(moments.ElementLength()) < 3 * nBlocks) throwRange(env, "moments shorter than 3 * nBlocks");
      int64_t firstInvalidBlock = -1;
      const double total = nlfit::mergeMoments(moments.Data(), nBlocks, &firstInvalidBlock);
      Napi::Object o = Napi::Object::New(env);
      o.Set("firstInvalidBlock", static_cast<double>(firstInvalidBlock));
      o.Set("totalSumOfSquares", total);
      return o;
    });
  }

  // reduceBlocks(blocks, q, nPoints, firstBlock, nBlocks[, extras]) -> packed subtree roots
  // Rows computed outside the kernel (a JavaScript model), reduced exactly as
  // evalRange reduces its own (rowblocks.hpp):
  //   blocks    Float64Array of at least nBlocks * blockSize * q values: global
  //             blocks firstBlock.. back to back, each blockSize x q column
  //             major, [w J | w (f - y)]; rows past the data are taken as 0.
  //   extras    (an object, every field optional), as evalRange's:
  //     moments   Float64Array of 3 * nBlocks(nPoints): each block is audited
  //               into it, from the columns vars (array of Float64Array), y
  //               and sigma (null for none), required with moments.
  //     rowOffset a multiple of the block size, at most firstBlock's first
  //               row: the global row of the columns' element 0.
  //     loss, fScale, costs   the robust loss (loss.hpp) and each block's cost.
  //     cancel    the fit's cancel buffer: null instead of the roots once it
  //               says stop (checked before every block).
  Napi::Value ReduceBlocks(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      const Napi::Float64Array blocks = float64Arg(info[0], "blocks");
      const int q = static_cast<int>(integerArg(info[1], "q", 2, nlfit::kMaxParams + 1));
      const int64_t nPoints = integerArg(info[2], "nPoints", 1, int64_t{1} << 52);
      const int64_t totalBlocks = nlfit::blockCount(nPoints);
      const int64_t firstBlock = integerArg(info[3], "firstBlock", 0, totalBlocks - 1);
      const int64_t nBlocks = integerArg(info[4], "nBlocks", 1, totalBlocks - firstBlock);
      if (static_cast<int64_t>(blocks.ElementLength()) < nBlocks * kBlockSize * q) {
        throwRange(env, "blocks shorter than nBlocks * blockSize * q");
      }
      nlfit::RowBlockOptions options;
      std::vector<const double*> vars;
      nlfit::Columns columns;
      nlfit::CancelCheck cancel;
      if (info.Length() > 5 && !info[5].IsUndefined() && !info[5].IsNull()) {
        if (!info[5].IsObject()) throwType(env, "Expected an object for reduceBlocks extras");
        const Napi::Object extras = info[5].As<Napi::Object>();
        cancel = cancelArg(env, extras.Get("cancel"));
        options.cancel = &cancel;
        const Napi::Value offset = extras.Get("rowOffset");
        if (!offset.IsUndefined()) {
          options.rowOffset = integerArg(offset, "rowOffset", 0, firstBlock * kBlockSize);
          if (options.rowOffset % kBlockSize != 0) throwRange(env, "rowOffset is not a multiple of the block size");
        }
        const Napi::Value m = extras.Get("moments");
        if (!m.IsUndefined() && !m.IsNull()) {
          Napi::Float64Array array = float64Arg(m, "moments");
          if (static_cast<int64_t>(array.ElementLength()) < 3 * totalBlocks) throwRange(env, "moments shorter than 3 * nBlocks");
          options.moments = array.Data();
          // The audited columns: every row the range covers, from rowOffset.
          const int64_t rowsRead = std::min<int64_t>(nPoints, (firstBlock + nBlocks) * kBlockSize) - options.rowOffset;
          const Napi::Value varsValue = extras.Get("vars");
          if (!varsValue.IsArray()) throwType(env, "Expected an array of Float64Array for vars (the audit needs the columns)");
          const Napi::Array varArray = varsValue.As<Napi::Array>();
          if (varArray.Length() > static_cast<uint32_t>(nlfit::kMaxVars)) throwRange(env, "too many variable columns");
          for (uint32_t v = 0; v < varArray.Length(); ++v) {
            const Napi::Float64Array column = float64Arg(varArray.Get(v), "a variable column");
            if (static_cast<int64_t>(column.ElementLength()) < rowsRead) throwRange(env, "variable column shorter than the rows this call reads");
            vars.push_back(column.Data());
          }
          const Napi::Float64Array y = float64Arg(extras.Get("y"), "y");
          if (static_cast<int64_t>(y.ElementLength()) < rowsRead) throwRange(env, "y shorter than the rows this call reads");
          columns.vars = vars.data();
          columns.nVars = static_cast<int>(vars.size());
          columns.y = y.Data();
          const Napi::Value sigmaValue = extras.Get("sigma");
          if (!sigmaValue.IsNull() && !sigmaValue.IsUndefined()) {
            const Napi::Float64Array sigma = float64Arg(sigmaValue, "sigma");
            if (static_cast<int64_t>(sigma.ElementLength()) < rowsRead) throwRange(env, "sigma shorter than the rows this call reads");
            columns.sigma = sigma.Data();
          }
          options.columns = &columns;
        }
        const Napi::Value l = extras.Get("loss");
        if (!l.IsUndefined()) {
          options.loss = static_cast<nlfit::Loss>(integerArg(l, "loss", 0, nlfit::kLossCount - 1));
          const Napi::Value scale = extras.Get("fScale");
          if (!scale.IsUndefined()) {
            if (!scale.IsNumber()) throwType(env, "Expected number for fScale");
            options.fScale = scale.As<Napi::Number>().DoubleValue();
            if (!(options.fScale > 0.0) || !std::isfinite(options.fScale)) throwRange(env, "Expected a finite number > 0 for fScale");
          }
        }
        const Napi::Value c = extras.Get("costs");
        if (!c.IsUndefined() && !c.IsNull()) {
          Napi::Float64Array array = float64Arg(c, "costs");
          if (static_cast<int64_t>(array.ElementLength()) < totalBlocks) throwRange(env, "costs shorter than nBlocks");
          options.costs = array.Data();
        }
        if (options.loss != nlfit::Loss::Linear && options.costs == nullptr) throwRange(env, "a robust loss needs a costs array");
      }
      const std::vector<double> packed =
          nlfit::reduceRowBlocks(blocks.Data(), q, nPoints, firstBlock, nBlocks, options);
      if (packed.empty()) return env.Null();
      return copyOut(env, packed.data(), packed.size());
    });
  }

  // finishTree(parts: Float64Array[], nBlocks, q) -> Float64Array (q*q)
  Napi::Value FinishTree(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      if (!info[0].IsArray()) throwType(env, "Expected an array of Float64Array for parts");
      const Napi::Array parts = info[0].As<Napi::Array>();
      const int64_t nBlocks = integerArg(info[1], "nBlocks", 1, int64_t{1} << 52);
      const int q = static_cast<int>(integerArg(info[2], "q", 2, nlfit::kMaxParams + 1));
      std::vector<std::pair<const double*, int64_t>> packed;
      for (uint32_t i = 0; i < parts.Length(); ++i) {
        const Napi::Float64Array part = float64Arg(parts.Get(i), "a reduced part");
        packed.emplace_back(part.Data(), static_cast<int64_t>(part.ElementLength()));
      }
      std::vector<double> R(static_cast<size_t>(q) * q);
      try {
        nlfit::finishTree(packed, nBlocks, q, R.data());
      } catch (const nlfit::ReductionError& e) {
        throwRange(env, std::string("Invalid reduction: ") + e.what());
      }
      return copyOut(env, R.data(), R.size());
    });
  }

  // covariance(R: Float64Array ((p+1)^2), p) -> { cov: Float64Array (p*p), rank }
  Napi::Value Covariance(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      const Napi::Float64Array R = float64Arg(info[0], "R");
      const int p = static_cast<int>(integerArg(info[1], "p", 1, nlfit::kMaxParams));
      if (R.ElementLength() != static_cast<size_t>(p + 1) * (p + 1)) throwRange(env, "factor size does not match p");
      std::vector<double> cov(static_cast<size_t>(p) * p);
      const int rank = nlfit::covarianceFromFactor(R.Data(), p, cov.data());
      Napi::Object o = Napi::Object::New(env);
      o.Set("cov", copyOut(env, cov.data(), cov.size()));
      o.Set("rank", rank);
      return o;
    });
  }
};

}  // namespace

NODE_API_ADDON(NlfitAddon)
