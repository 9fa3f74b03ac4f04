// Stopping a pass from another thread: a fit's cancel word and deadline.
//
// A fit owns a small shared buffer (src/exec/cancel.ts, a SharedArrayBuffer
// of kCancelBytes) that every one of its pass tasks carries:
//   int32 kCancelFlagIndex        0 while the fit runs; the main thread
//                                 stores a nonzero reason (Atomics.store)
//                                 when the fit's AbortSignal fires or its
//                                 timeoutMs passes.
//   float64 at kCancelDeadlineByte the fit's deadline, in ms on steadyMs()'s
//                                 clock; +Infinity for none. Written before
//                                 the first task, never changed.
// The kernel's block loops (evalRange in the binding, reduceRowBlocks,
// fitCurves between curves) ask CancelCheck::stop() before each block or
// curve and, when it answers true, return without finishing; the caller
// drops the partial pass. A pass therefore stops within one block (about
// a microsecond of work at 512 points) of the word being set.
//
// Why a deadline besides the word: a pass small enough to run inline runs on
// the main thread, whose timers cannot fire while the kernel holds it, so the
// kernel reads the clock itself. A steady_clock read costs tens of ns against
// about a microsecond per block, so the clock is read once every
// kClockStride checks; the word, a relaxed load that costs nothing
// measurable, on every check.
//
// The word is read with a relaxed atomic load: no ordering with other memory
// is needed, since the work done after the word is set is thrown away, and a
// store becomes visible to the loading thread within a block's time.
//
// steadyMs() is the clock the deadline is written in (the addon exports it as
// monotonicMs): std::chrono::steady_clock, which is one clock for every
// thread of the process (CLOCK_MONOTONIC on Linux), unlike performance.now(),
// whose origin differs per worker.
#pragma once
#include <chrono>
#include <cstdint>
#include <limits>

namespace nlfit {

// Layout of the shared buffer; src/exec/cancel.ts mirrors it (the addon
// exports these so the TypeScript side can refuse a mismatch).
constexpr int kCancelFlagIndex = 0;
constexpr int kCancelDeadlineByte = 8;
constexpr int kCancelBytes = 16;

// Checks between clock reads when a deadline is set.
constexpr int kClockStride = 8;

inline double steadyMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline int32_t loadRelaxed(const int32_t* word) {
#if defined(__GNUC__) || defined(__clang__)
  return __atomic_load_n(word, __ATOMIC_RELAXED);
#else
  // Aligned 32-bit loads are single-copy atomic on every platform Node supports.
  return *static_cast<const volatile int32_t*>(word);
#endif
}

// One loop's view of a cancel buffer. Not thread-safe (it counts checks);
// each thread makes its own from the shared word.
class CancelCheck {
 public:
  // Never stops.
  CancelCheck() = default;
  // flag: the shared word (kept by the caller for the loop's duration), or
  // null for none; deadlineMs on steadyMs()'s clock, +Infinity for none.
  CancelCheck(const int32_t* flag, double deadlineMs) : flag_(flag), deadlineMs_(deadlineMs) {}

  // True once the word is set or the deadline has passed; stays true.
  bool stop() {
    if (stopped_) return true;
    if (flag_ != nullptr && loadRelaxed(flag_) != 0) return stopped_ = true;
    if (deadlineMs_ == std::numeric_limits<double>::infinity()) return false;
    if (++sinceClock_ < kClockStride) return false;
    sinceClock_ = 0;
    return stopped_ = steadyMs() >= deadlineMs_;
  }

 private:
  const int32_t* flag_ = nullptr;
  double deadlineMs_ = std::numeric_limits<double>::infinity();
  // Starts at the stride so the first check reads the clock: a task that
  // begins after the deadline does no block at all.
  int sinceClock_ = kClockStride - 1;
  bool stopped_ = false;
};

}  // namespace nlfit
