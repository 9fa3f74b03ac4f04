// The few pieces every native test program shares: counted checks, the
// closing "N passed, M failed" line that test/native.test.ts reads, message
// formatting, and a seeded generator that gives the same sequence everywhere.
#pragma once
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>

namespace nlfit_test {

inline int gPassed = 0;
inline int gFailed = 0;

// Counts a check; prints one line for a failure.
inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++gPassed;
    return;
  }
  ++gFailed;
  std::printf("FAIL %s\n", what.c_str());
  std::fflush(stdout);
}

// Prints the closing line and returns the process exit code.
inline int report();

// Runs named tests in order; an exception escaping one is one failure and the
// others still run. Returns the process exit code.
template <size_t N>
int runTests(const std::pair<const char*, void (*)()> (&tests)[N]) {
  for (const auto& [name, test] : tests) {
    try {
      test();
    } catch (const std::exception& e) {
      check(false, std::string(name) + " threw: " + e.what());
    }
  }
  return report();
}

inline int report() {
  std::printf("%d passed, %d failed\n", gPassed, gFailed);
  return gFailed == 0 ? 0 : 1;
}

inline std::string format(const char* fmt, ...) {
  char buffer[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buffer, sizeof buffer, fmt, args);
  va_end(args);
  return buffer;
}

// splitmix64: small, fast and the same sequence on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform on [-1, 1).
  double symmetric() { return static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0; }
  // Uniform integer in [0, n).
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

}  // namespace nlfit_test
