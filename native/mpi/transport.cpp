// The optional MPI transport: N-API glue over a few MPI calls, built as its
// own addon (nlfit_mpi.node) and only when MPI is found (native/build-flags.cjs
// decides, for binding.gyp and CMakeLists.txt alike).
//
// Why a separate addon: the main addon (nlfit.node) is loaded by every worker
// thread, and a worker must never load libmpi; a machine without MPI must load
// nlfit.node all the same. So only this addon links libmpi, and
// src/distributed/mpi.ts loads it lazily, on the main thread, when a
// distributed fit asks for MPI.
//
// Threading: MPI_Init_thread(MPI_THREAD_FUNNELED). Only the thread that
// called init() (Node's main thread) makes MPI calls; every entry point here
// checks that. Nothing here ever blocks: the all-gather is non-blocking
// (MPI_Iallgather of the 64-bit lengths, then MPI_Iallgatherv of the bytes)
// and JavaScript polls test(), which drives MPI's progress.
//
// Errors: MPI_ERRORS_RETURN is set on MPI_COMM_WORLD (when this addon
// initialised MPI) and on the communicator the exchanges use (a duplicate of
// MPI_COMM_WORLD, so they never match another library's traffic), and every
// failed call becomes a JavaScript Error carrying MPI_Error_string's text.
//
// Exports:
//   init() -> { rank, size, library, threadLevel, libmpi }   idempotent
//   new Exchange(); exchange.start(bytes[, roundBytes]); exchange.test()
//       -> null while pending, else Uint8Array[] (copies, indexed by rank)
//   abort(code)    MPI_Abort(MPI_COMM_WORLD, code); never returns
//   finalize()     -> true when MPI is (now) finalised or was never started,
//                  false when an exchange is still in flight or failed
//                  midway (MPI is then left for mpirun to clean up)
#define OMPI_SKIP_MPICXX 1   // the C API only: no C++ bindings, no -lmpi_cxx
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <napi.h>

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// Process-wide: MPI is initialised once per process, whatever the number of
// Node environments that load this addon.
struct MpiState {
  bool ready = false;            // init() succeeded
  bool initializedHere = false;  // this addon called MPI_Init_thread
  bool finalized = false;        // finalize() ran (MPI cannot be started again)
  int rank = 0;
  int size = 1;
  int provided = MPI_THREAD_SINGLE;
  std::string library;
  std::string libmpi;  // the path of the libmpi made global (or why not)
  MPI_Comm comm = MPI_COMM_NULL;
  std::thread::id thread;
  long inFlight = 0;  // exchanges started and not yet complete
  bool broken = false;  // an exchange failed midway: see Finalize
};
MpiState g;

[[noreturn]] void fail(Napi::Env env, const std::string& message) { throw Napi::Error::New(env, "nlfit: " + message); }

std::string mpiErrorText(int code) {
  char text[MPI_MAX_ERROR_STRING + 1] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(std::max(0, std::min(length, MPI_MAX_ERROR_STRING))));
}

void check(Napi::Env env, int code, const char* call) {
  if (code != MPI_SUCCESS) fail(env, std::string(call) + " failed: " + mpiErrorText(code));
}

const char* threadLevelName(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "unknown";
  }
}

// Every call after init() must come from the thread that made it
// (MPI_THREAD_FUNNELED).
void requireReady(Napi::Env env) {
  if (g.finalized) fail(env, "MPI has been finalized in this process");
  if (!g.ready) fail(env, "MPI is not initialised (call init() first)");
  if (std::this_thread::get_id() != g.thread) {
    fail(env, "MPI may only be used from the thread that initialised it (MPI_THREAD_FUNNELED)");
  }
}

// Node loads addons with dlopen(RTLD_LAZY | RTLD_LOCAL), so libmpi (a
// dependency of this addon) lands in a local scope. Open MPI then dlopen()s
// its plugins (mca_*.so), which are not linked against libmpi and expect its
// symbols in the global scope: MPI_Init fails with "undefined symbol" errors.
// Re-opening the very libmpi this addon is linked against with RTLD_GLOBAL |
// RTLD_NOLOAD promotes it (and its dependencies, libopen-pal and
// libopen-rte) to the global scope without loading anything new. The handle
// is never closed. Harmless for MPICH, which has no such plugins.
std::string promoteLibmpi() {
  if (const char* skip = std::getenv("NLFIT_MPI_NO_GLOBAL")) {
    if (std::strcmp(skip, "1") == 0) return "(not made global: NLFIT_MPI_NO_GLOBAL=1)";
  }
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) == 0 || info.dli_fname == nullptr) {
    return "(not made global: dladdr found no library for MPI_Init_thread)";
  }
  void* handle = dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  if (handle == nullptr) {
    const char* why = dlerror();
    return std::string("(not made global: ") + (why ? why : "dlopen failed") + ")";
  }
  return info.dli_fname;
}

Napi::Object describe(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", g.rank);
  out.Set("size", g.size);
  out.Set("library", g.library);
  out.Set("threadLevel", threadLevelName(g.provided));
  out.Set("libmpi", g.libmpi);
  return out;
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g.ready) {
    requireReady(env);
    return describe(env);
  }
  if (g.finalized) fail(env, "MPI has been finalized in this process and cannot be initialised again");
  int already = 0;
  check(env, MPI_Initialized(&already), "MPI_Initialized");
  if (already) {
    // Someone else in this process started MPI: use it as it is, leave
    // MPI_COMM_WORLD's error handler and finalisation to them.
    check(env, MPI_Query_thread(&g.provided), "MPI_Query_thread");
    g.libmpi = "(initialised by another library)";
  } else {
    g.libmpi = promoteLibmpi();
    // MPI_Init_thread's own failures abort the process (no error handler
    // can be set before it): that is MPI's rule, not ours.
    check(env, MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &g.provided), "MPI_Init_thread");
    g.initializedHere = true;
  }
  g.thread = std::this_thread::get_id();
  if (g.provided < MPI_THREAD_FUNNELED) {
    if (g.initializedHere) {
      MPI_Finalize();
      g.finalized = true;
    }
    fail(env, std::string("MPI provides only ") + threadLevelName(g.provided) +
                  "; nlfit needs MPI_THREAD_FUNNELED (MPI calls from the main thread only)");
  }
  if (g.initializedHere) check(env, MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(env, MPI_Comm_dup(MPI_COMM_WORLD, &g.comm), "MPI_Comm_dup");
  check(env, MPI_Comm_set_errhandler(g.comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(env, MPI_Comm_rank(g.comm, &g.rank), "MPI_Comm_rank");
  check(env, MPI_Comm_size(g.comm, &g.size), "MPI_Comm_size");
  char version[MPI_MAX_LIBRARY_VERSION_STRING + 1] = {0};
  int length = 0;
  check(env, MPI_Get_library_version(version, &length), "MPI_Get_library_version");
  // The length Open MPI reports counts the terminating NUL: read up to it.
  std::string text(version, strnlen(version, static_cast<size_t>(std::max(0, std::min(length, MPI_MAX_LIBRARY_VERSION_STRING)))));
  const size_t first = text.find_first_not_of(" \t\r\n");
  const size_t last = text.find_last_not_of(" \t\r\n");
  g.library = first == std::string::npos ? std::string() : text.substr(first, last - first + 1);
  g.ready = true;
  return describe(env);
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g.finalized || !g.ready) {
    // Never started (or a failed init that already cleaned up): nothing to do.
    return Napi::Boolean::New(env, true);
  }
  if (std::this_thread::get_id() != g.thread) fail(env, "finalize() must be called from the thread that initialised MPI");
  // An exchange still in flight (or one that failed midway) means the other
  // ranks are in (or will reach) a collective this rank has left.
  // MPI_Finalize could then wait for them for ever; not finalising instead
  // lets mpirun see a rank end without MPI_Finalize and end the whole job.
  if (g.inFlight > 0 || g.broken) return Napi::Boolean::New(env, false);
  int rc = MPI_Comm_free(&g.comm);
  int done = 0;
  MPI_Finalized(&done);
  if (g.initializedHere && !done) {
    const int finalizeRc = MPI_Finalize();
    if (rc == MPI_SUCCESS) rc = finalizeRc;
  }
  g.finalized = true;
  g.ready = false;
  if (rc != MPI_SUCCESS) fail(env, "MPI_Finalize failed: " + mpiErrorText(rc));
  return Napi::Boolean::New(env, true);
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  int code = 1;
  if (info.Length() > 0 && info[0].IsNumber()) code = info[0].As<Napi::Number>().Int32Value();
  int finalized = 0;
  if (g.ready) MPI_Finalized(&finalized);
  if (g.ready && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  // MPI_Abort does not return; without MPI there is only this process to end.
  std::_Exit(code);
}

// One all-gather, owned by an Exchange (or, if the Exchange is garbage
// collected mid-flight, leaked on purpose: MPI may still write its buffers).
struct Gather {
  enum class Phase { Idle, Lengths, Data };
  Phase phase = Phase::Idle;
  MPI_Request request = MPI_REQUEST_NULL;
  std::vector<uint8_t> send;        // this rank's contribution (a copy)
  uint64_t ownLength = 0;
  std::vector<uint64_t> lengths;    // every rank's, from MPI_Iallgather
  std::vector<uint64_t> offsets;    // of each rank's bytes in `gathered`
  std::vector<uint64_t> received;   // per rank, bytes received so far
  std::vector<uint8_t> gathered;    // every rank's bytes, back to back
  std::vector<uint8_t> staging;     // one round's bytes when there are several
  std::vector<int> counts;
  std::vector<int> displs;
  uint64_t roundBytes = INT_MAX;    // bytes per MPI_Iallgatherv over all ranks
  bool direct = false;              // one round, straight into `gathered`
};

std::vector<Gather*> abandoned;  // see ~Exchange

uint8_t zeroByte = 0;  // a valid address for 0-byte buffers
uint8_t* bytesOf(std::vector<uint8_t>& v) { return v.empty() ? &zeroByte : v.data(); }

class Exchange : public Napi::ObjectWrap<Exchange> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Exchange",
                       {InstanceMethod<&Exchange::Start>("start"), InstanceMethod<&Exchange::Test>("test"),
                        InstanceAccessor<&Exchange::Pending>("pending")});
  }

  explicit Exchange(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Exchange>(info), op_(new Gather()) {}

  ~Exchange() override {
    if (op_ && op_->phase != Gather::Phase::Idle) abandoned.push_back(op_.release());
  }

 private:
  // start(bytes: Uint8Array, roundBytes?: number): launches the exchange of
  // the lengths. roundBytes (tests only) caps the bytes one MPI_Iallgatherv
  // moves over all ranks, below MPI's int counts (INT_MAX), which is how
  // totals over 2 GiB are moved: in rounds, every rank sending up to
  // roundBytes / size bytes of what is left of its contribution.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    requireReady(env);
    if (op_->phase != Gather::Phase::Idle) fail(env, "an all-gather is already in progress on this exchange");
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Napi::TypeError::New(env, "nlfit: Expected Uint8Array for bytes");
    }
    uint64_t roundBytes = INT_MAX;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "nlfit: Expected number for roundBytes");
      const double r = info[1].As<Napi::Number>().DoubleValue();
      if (!(r >= 1)) throw Napi::RangeError::New(env, "nlfit: Expected roundBytes >= 1");
      roundBytes = r >= static_cast<double>(INT_MAX) ? static_cast<uint64_t>(INT_MAX) : static_cast<uint64_t>(r);
    }
    const Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    Gather& op = *op_;
    try {
      op.send.assign(bytes.Data(), bytes.Data() + bytes.ByteLength());
      op.lengths.assign(static_cast<size_t>(g.size), 0);
    } catch (const std::bad_alloc&) {
      throw Napi::RangeError::New(env, "nlfit: out of memory for the all-gather");
    }
    op.ownLength = op.send.size();
    op.roundBytes = std::max<uint64_t>(roundBytes, static_cast<uint64_t>(g.size));
    check(env,
          MPI_Iallgather(&op.ownLength, 1, MPI_UINT64_T, op.lengths.data(), 1, MPI_UINT64_T, g.comm, &op.request),
          "MPI_Iallgather");
    op.phase = Gather::Phase::Lengths;
    ++g.inFlight;
    return env.Undefined();
  }

  // null while pending; then every rank's bytes, copied out, indexed by rank.
  Napi::Value Test(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    requireReady(env);
    Gather& op = *op_;
    if (op.phase == Gather::Phase::Idle) fail(env, "no all-gather in progress on this exchange (call start() first)");
    try {
      for (;;) {
        int complete = 0;
        check(env, MPI_Test(&op.request, &complete, MPI_STATUS_IGNORE), "MPI_Test");
        if (!complete) return env.Null();
        if (op.phase == Gather::Phase::Lengths) {
          plan(env, op);
        } else {
          finishRound(op);
          if (!roundsLeft(op)) {
            Napi::Value out = result(env, op);
            reset(op);
            return out;
          }
        }
        startRound(env, op);
      }
    } catch (...) {
      // A failed exchange cannot be resumed, and the ranks no longer agree on
      // where they are: the others may wait in this collective for ever. The
      // exchange becomes usable again (for the error to propagate), but MPI
      // is never finalised in this process (see Finalize). If MPI may still
      // own the buffers (a request not known to be complete), they are
      // leaked rather than freed.
      g.broken = true;
      if (op.request != MPI_REQUEST_NULL) {
        abandoned.push_back(op_.release());
        op_.reset(new Gather());
        --g.inFlight;
      } else {
        reset(op);
      }
      throw;
    }
  }

  // Back to idle, the memory given back now rather than at the next exchange.
  static void reset(Gather& op) {
    if (op.phase != Gather::Phase::Idle) --g.inFlight;
    op.phase = Gather::Phase::Idle;
    op.request = MPI_REQUEST_NULL;
    std::vector<uint8_t>().swap(op.send);
    std::vector<uint8_t>().swap(op.gathered);
    std::vector<uint8_t>().swap(op.staging);
  }

  Napi::Value Pending(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), op_->phase != Gather::Phase::Idle);
  }

  // The lengths are in (the same on every rank): lay out the bytes.
  static void plan(Napi::Env env, Gather& op) {
    const size_t n = op.lengths.size();
    uint64_t total = 0;
    op.offsets.assign(n, 0);
    op.received.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      op.offsets[i] = total;
      if (op.lengths[i] > UINT64_MAX - total) fail(env, "all-gather total exceeds 2^64 bytes");
      total += op.lengths[i];
    }
    if (total > static_cast<uint64_t>(SIZE_MAX) || total > op.gathered.max_size()) {
      throw Napi::RangeError::New(env, "nlfit: all-gather total of " + std::to_string(total) + " bytes is too large");
    }
    try {
      op.gathered.resize(static_cast<size_t>(total));
      op.counts.assign(n, 0);
      op.displs.assign(n, 0);
    } catch (const std::bad_alloc&) {
      throw Napi::RangeError::New(env, "nlfit: out of memory for an all-gather of " + std::to_string(total) + " bytes");
    }
    op.direct = total <= op.roundBytes;
    op.phase = Gather::Phase::Data;
  }

  static bool roundsLeft(const Gather& op) {
    for (size_t i = 0; i < op.lengths.size(); ++i) {
      if (op.received[i] < op.lengths[i]) return true;
    }
    return false;
  }

  // MPI_Iallgatherv of the next round. With one round (total <= roundBytes,
  // the usual case) the bytes go straight to their place; else every rank
  // sends up to roundBytes / size bytes of the rest of its contribution
  // through a staging buffer. Every rank computes the same counts from the
  // same lengths. A round with nothing left for anyone is still run once
  // (all counts 0), so a 0-byte all-gather completes like any other.
  static void startRound(Napi::Env env, Gather& op) {
    const size_t n = op.lengths.size();
    uint8_t* sendAt;
    int sendCount;
    uint8_t* recvAt;
    if (op.direct) {
      for (size_t i = 0; i < n; ++i) {
        op.counts[i] = static_cast<int>(op.lengths[i]);
        op.displs[i] = static_cast<int>(op.offsets[i]);
      }
      sendAt = bytesOf(op.send);
      sendCount = static_cast<int>(op.ownLength);
      recvAt = bytesOf(op.gathered);
    } else {
      const uint64_t chunk = op.roundBytes / n;  // >= 1: roundBytes >= size
      uint64_t at = 0;
      for (size_t i = 0; i < n; ++i) {
        const uint64_t count = std::min<uint64_t>(op.lengths[i] - op.received[i], chunk);
        op.counts[i] = static_cast<int>(count);
        op.displs[i] = static_cast<int>(at);
        at += count;
      }
      try {
        op.staging.resize(static_cast<size_t>(at));
      } catch (const std::bad_alloc&) {
        throw Napi::RangeError::New(env, "nlfit: out of memory for an all-gather round");
      }
      const size_t me = static_cast<size_t>(g.rank);
      sendAt = bytesOf(op.send) + op.received[me];
      sendCount = op.counts[me];
      recvAt = bytesOf(op.staging);
    }
    check(env,
          MPI_Iallgatherv(sendAt, sendCount, MPI_BYTE, recvAt, op.counts.data(), op.displs.data(), MPI_BYTE, g.comm,
                          &op.request),
          "MPI_Iallgatherv");
  }

  static void finishRound(Gather& op) {
    for (size_t i = 0; i < op.lengths.size(); ++i) {
      const size_t count = static_cast<size_t>(op.counts[i]);
      if (!op.direct && count > 0) {
        std::memcpy(op.gathered.data() + op.offsets[i] + op.received[i], op.staging.data() + op.displs[i], count);
      }
      op.received[i] += count;
    }
  }

  static Napi::Value result(Napi::Env env, const Gather& op) {
    const size_t n = op.lengths.size();
    Napi::Array out = Napi::Array::New(env, n);
    for (size_t i = 0; i < n; ++i) {
      const size_t length = static_cast<size_t>(op.lengths[i]);
      Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, length);
      if (length > 0) std::memcpy(buffer.Data(), op.gathered.data() + op.offsets[i], length);
      out.Set(static_cast<uint32_t>(i), Napi::Uint8Array::New(env, length, buffer, 0));
    }
    return out;
  }

  std::unique_ptr<Gather> op_;
};

Napi::Object Register(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("Exchange", Exchange::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(nlfit_mpi, Register)
