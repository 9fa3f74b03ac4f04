// A small stand-in for libFuzzer's driver, for machines with g++ but no
// clang: it loads seed inputs, then mutates them at random and feeds each
// mutant to LLVMFuzzerTestOneInput, for a number of runs or seconds. Built
// with -fsanitize=address,undefined, any memory error or undefined behaviour
// the harness reaches kills the run, and the input that did it is saved.
//
// Without coverage instrumentation the driver has one feedback signal: an
// input that makes the harness report an outcome it had not seen before
// (NlfitFuzzOutcomeCount, if the harness defines it) joins the pool that
// later mutants are made from.
//
// Usage, with libFuzzer's flag names so scripts can drive either:
//   vm_fuzz [-runs=N] [-max_total_time=S] [-seed=N] [-max_len=N] [-timeout=S]
//           [-artifact_prefix=DIR/] [-print_outcomes=1] CORPUS_DIR_OR_FILE...
// Without -runs and -max_total_time it runs each input once (to replay a
// saved crash). It exits 0 when every run returned, 1 on a crash or timeout.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));
extern "C" size_t NlfitFuzzOutcomeCount() __attribute__((weak));
extern "C" void NlfitFuzzPrintOutcomes() __attribute__((weak));
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize, unsigned int seed) __attribute__((weak));
extern "C" void __sanitizer_set_death_callback(void (*callback)()) __attribute__((weak));

// A UBSan report aborts (SIGABRT, caught below to save the input) rather than
// exiting, which would skip the handler; the environment can still override.
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1:abort_on_error=1"; }

namespace {

using Bytes = std::vector<uint8_t>;

struct Options {
  long long runs = -1;
  double maxTotalTime = 0;
  uint64_t seed = 0;
  size_t maxLen = 4096;
  unsigned timeout = 20;
  std::string artifactPrefix = "./";
  bool printOutcomes = false;
  std::vector<std::string> inputs;
};

// ---- saving the input that crashed --------------------------------------------

// The input being run, and where a crash writes it; a signal handler reads
// them, so they are plain globals set up before the first run.
const Bytes* gCurrent = nullptr;
char gArtifactPath[4096];
size_t gArtifactPrefixLength = 0;

// Writes the current input to <prefix><kind>-<hash>, using only calls that are
// safe in a signal handler.
void saveCurrent(const char* kind) {
  if (gCurrent == nullptr) return;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (uint8_t b : *gCurrent) hash = (hash ^ b) * 1099511628211ull;
  size_t at = gArtifactPrefixLength;
  for (const char* k = kind; *k != '\0' && at < sizeof gArtifactPath - 20; ++k) gArtifactPath[at++] = *k;
  gArtifactPath[at++] = '-';
  for (int shift = 60; shift >= 0; shift -= 4) gArtifactPath[at++] = "0123456789abcdef"[(hash >> shift) & 15u];
  gArtifactPath[at] = '\0';
  const int fd = open(gArtifactPath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  const ssize_t written = write(fd, gCurrent->data(), gCurrent->size());
  close(fd);
  const char* note = written == static_cast<ssize_t>(gCurrent->size()) ? "\nvm_fuzz driver: the input is saved in " : "\nvm_fuzz driver: could not save the input in ";
  (void)!write(2, note, std::strlen(note));
  (void)!write(2, gArtifactPath, at);
  (void)!write(2, "\n", 1);
}

void onSanitizerDeath() { saveCurrent("crash"); }

void onFatalSignal(int sig) {
  saveCurrent("crash");
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void onAlarm(int) {
  const char message[] = "\nvm_fuzz driver: an input ran past -timeout\n";
  (void)!write(2, message, sizeof message - 1);
  saveCurrent("timeout");
  _exit(1);
}

void installCrashHandlers(const Options& options) {
  gArtifactPrefixLength = std::min(options.artifactPrefix.size(), sizeof gArtifactPath - 64);
  std::memcpy(gArtifactPath, options.artifactPrefix.data(), gArtifactPrefixLength);
  std::signal(SIGALRM, onAlarm);
  std::signal(SIGABRT, onFatalSignal);
  // The sanitizers report SEGV and the like themselves, then call the death callback.
  if (__sanitizer_set_death_callback != nullptr) {
    __sanitizer_set_death_callback(onSanitizerDeath);
  } else {
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, onFatalSignal);
  }
}

// ---- inputs -----------------------------------------------------------------

bool readFile(const std::string& path, Bytes& out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  out.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  return true;
}

// The files named, and the regular files in the directories named, in name order.
std::vector<Bytes> loadInputs(const std::vector<std::string>& paths, size_t maxLen) {
  std::vector<Bytes> inputs;
  for (const std::string& path : paths) {
    struct stat info {};
    if (stat(path.c_str(), &info) != 0) {
      std::fprintf(stderr, "vm_fuzz driver: cannot read %s\n", path.c_str());
      std::exit(1);
    }
    std::vector<std::string> files;
    if (S_ISDIR(info.st_mode)) {
      if (DIR* dir = opendir(path.c_str())) {
        while (dirent* entry = readdir(dir)) {
          const std::string file = path + "/" + entry->d_name;
          struct stat fileInfo {};
          if (stat(file.c_str(), &fileInfo) == 0 && S_ISREG(fileInfo.st_mode)) files.push_back(file);
        }
        closedir(dir);
      }
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(path);
    }
    for (const std::string& file : files) {
      Bytes bytes;
      if (!readFile(file, bytes)) continue;
      if (bytes.size() > maxLen) bytes.resize(maxLen);
      inputs.push_back(std::move(bytes));
    }
  }
  return inputs;
}

// ---- mutation -----------------------------------------------------------------

class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }

 private:
  uint64_t state_;
};

// Values at the edges of the ranges the verifier checks (bytecode.hpp).
const int32_t kInterestingWords[] = {0,  1,  -1, 2,   3,   6,   26,  35,    36,    63,         64,
                                     65, 66, 255, 256, 257, 1 << 16, (1 << 16) + 1, INT32_MIN, INT32_MAX,
                                     0x4E4C4631};
const uint8_t kInterestingBytes[] = {0, 1, 2, 0x7f, 0x80, 0xff, 35, 36, 64, 65};
const double kInterestingDoubles[] = {0.0, -0.0, 1.0, -1.0, 0.5, 1e308, -1e308, 5e-324, 1e-310, INFINITY, -INFINITY, NAN};

void putWord(Bytes& b, size_t at, uint64_t value, size_t bytes) {
  for (size_t k = 0; k < bytes && at + k < b.size(); ++k) b[at + k] = static_cast<uint8_t>(value >> (8 * k));
}

// One random edit of `b`; `pool` supplies splicing material.
void mutateOnce(Bytes& b, Random& rng, const std::vector<Bytes>& pool, size_t maxLen) {
  if (b.empty()) b.push_back(static_cast<uint8_t>(rng.next()));
  const size_t at = rng.below(b.size());
  switch (rng.below(12)) {
    case 0: b[at] ^= static_cast<uint8_t>(1u << rng.below(8)); break;
    case 1: b[at] = static_cast<uint8_t>(rng.next()); break;
    case 2: b[at] = kInterestingBytes[rng.below(std::size(kInterestingBytes))]; break;
    case 3: b[at] = static_cast<uint8_t>(b[at] + static_cast<int>(rng.below(17)) - 8); break;
    case 4: putWord(b, at, static_cast<uint16_t>(kInterestingWords[rng.below(std::size(kInterestingWords))]), 2); break;
    case 5: putWord(b, at, static_cast<uint32_t>(kInterestingWords[rng.below(std::size(kInterestingWords))]), 4); break;
    case 6: {
      uint64_t bits;
      const double d = kInterestingDoubles[rng.below(std::size(kInterestingDoubles))];
      std::memcpy(&bits, &d, sizeof bits);
      putWord(b, at, bits, 8);
      break;
    }
    case 7: {
      const size_t n = 1 + rng.below(8);
      for (size_t k = 0; k < n && b.size() < maxLen; ++k) b.insert(b.begin() + static_cast<long>(at), static_cast<uint8_t>(rng.next()));
      break;
    }
    case 8: {
      const size_t n = std::min(b.size() - at, 1 + rng.below(8));
      b.erase(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + n));
      break;
    }
    case 9: {
      // Repeat a stretch elsewhere: instructions often come in runs.
      const size_t n = std::min(b.size() - at, 1 + rng.below(16));
      const Bytes piece(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + n));
      const size_t to = rng.below(b.size() + 1);
      b.insert(b.begin() + static_cast<long>(to), piece.begin(), piece.end());
      break;
    }
    case 10: {
      const Bytes& other = pool[rng.below(pool.size())];
      if (other.empty()) break;
      const size_t from = rng.below(other.size());
      const size_t n = std::min(other.size() - from, 1 + rng.below(64));
      for (size_t k = 0; k < n; ++k) {
        if (at + k < b.size()) b[at + k] = other[from + k];
        else b.push_back(other[from + k]);
      }
      break;
    }
    default: b.resize(at); break;
  }
  if (b.size() > maxLen) b.resize(maxLen);
}

// What LLVMFuzzerMutate works with: the generator and the pool to splice from.
Random* gRandom = nullptr;
const std::vector<Bytes>* gPool = nullptr;

// ---- running ----------------------------------------------------------------

Options parseOptions(int argc, char** argv) {
  Options o;
  o.seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const size_t n = std::strlen(name);
      return arg.compare(0, n, name) == 0 ? arg.c_str() + n : nullptr;
    };
    if (const char* v = value("-runs=")) o.runs = std::atoll(v);
    else if (const char* v = value("-max_total_time=")) o.maxTotalTime = std::atof(v);
    else if (const char* v = value("-seed=")) o.seed = std::strtoull(v, nullptr, 10);
    else if (const char* v = value("-max_len=")) o.maxLen = std::max<size_t>(1, std::strtoull(v, nullptr, 10));
    else if (const char* v = value("-timeout=")) o.timeout = static_cast<unsigned>(std::atoi(v));
    else if (const char* v = value("-artifact_prefix=")) o.artifactPrefix = v;
    else if (const char* v = value("-print_outcomes=")) o.printOutcomes = std::atoi(v) != 0;
    else if (arg[0] == '-') std::fprintf(stderr, "vm_fuzz driver: ignoring unknown flag %s\n", arg.c_str());
    else o.inputs.push_back(arg);
  }
  return o;
}

size_t outcomeCount() { return NlfitFuzzOutcomeCount != nullptr ? NlfitFuzzOutcomeCount() : 0; }

void runOne(const Bytes& input, unsigned timeout) {
  gCurrent = &input;
  if (timeout > 0) alarm(timeout);
  LLVMFuzzerTestOneInput(input.data(), input.size());
  if (timeout > 0) alarm(0);
}

}  // namespace

// libFuzzer's entry point for a harness's custom mutator to fall back on: one
// random edit of data[0 .. size), within maxSize bytes; returns the new size.
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t maxSize) {
  Bytes bytes(data, data + size);
  mutateOnce(bytes, *gRandom, *gPool, maxSize);
  std::memcpy(data, bytes.data(), bytes.size());
  return bytes.size();
}

int main(int argc, char** argv) {
  const Options options = parseOptions(argc, argv);
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  installCrashHandlers(options);
  std::vector<Bytes> pool = loadInputs(options.inputs, options.maxLen);
  const size_t seeds = pool.size();
  if (pool.empty()) pool.push_back(Bytes{});
  std::fprintf(stderr, "vm_fuzz driver: seed %llu, %zu seed inputs, max_len %zu\n",
               static_cast<unsigned long long>(options.seed), seeds, options.maxLen);

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  unsigned long long runs = 0;
  for (const Bytes& input : pool) {
    runOne(input, options.timeout);
    ++runs;
  }
  std::fprintf(stderr, "#%llu\tINITED outcomes: %zu corp: %zu\n", runs, outcomeCount(), pool.size());

  const bool mutate = options.runs >= 0 || options.maxTotalTime > 0;
  Random rng(options.seed);
  gRandom = &rng;
  gPool = &pool;
  Bytes mutant;
  unsigned long long nextPulse = 1024;
  double lastPulse = 0;
  while (mutate) {
    if (options.runs >= 0 && runs >= static_cast<unsigned long long>(options.runs)) break;
    if ((runs & 63) == 0 && options.maxTotalTime > 0 && elapsed() >= options.maxTotalTime) break;
    mutant = pool[rng.below(pool.size())];
    size_t size = mutant.size();
    mutant.resize(options.maxLen);
    const size_t edits = 1 + rng.below(3);
    for (size_t k = 0; k < edits; ++k) {
      size = LLVMFuzzerCustomMutator != nullptr
                 ? LLVMFuzzerCustomMutator(mutant.data(), size, options.maxLen, static_cast<unsigned>(rng.next()))
                 : LLVMFuzzerMutate(mutant.data(), size, options.maxLen);
    }
    mutant.resize(size);
    const size_t before = outcomeCount();
    runOne(mutant, options.timeout);
    ++runs;
    if (outcomeCount() > before && pool.size() < 100000) pool.push_back(mutant);
    if (runs >= nextPulse || ((runs & 1023) == 0 && elapsed() - lastPulse >= 10)) {
      nextPulse = runs >= nextPulse ? nextPulse * 2 : nextPulse;
      lastPulse = elapsed();
      std::fprintf(stderr, "#%llu\tpulse outcomes: %zu corp: %zu exec/s: %.0f\n", runs, outcomeCount(), pool.size(), runs / lastPulse);
    }
  }
  gCurrent = nullptr;
  const double seconds = elapsed();
  std::fprintf(stderr, "Done %llu runs in %.1f s: %.0f exec/s, %zu distinct outcomes, corpus %zu inputs (%zu seeds)\n", runs,
               seconds, seconds > 0 ? runs / seconds : 0.0, outcomeCount(), pool.size(), seeds);
  if (options.printOutcomes && NlfitFuzzPrintOutcomes != nullptr) NlfitFuzzPrintOutcomes();
  return 0;
}
