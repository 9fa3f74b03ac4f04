// Tests of stopping the kernel's loops from outside (native/kernel/cancel.hpp):
// CancelCheck answers from the shared word and the deadline; reduceRowBlocks
// returns nothing once asked to stop and the same bits as without a check
// otherwise; fitCurves stops between curves and says how many it fitted,
// leaving the rest of its range untouched.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "batch.hpp"
#include "bytecode.hpp"
#include "cancel.hpp"
#include "check.hpp"
#include "layout.hpp"
#include "rowblocks.hpp"

using namespace nlfit;
using namespace nlfit_test;

namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();

// a * x + b: params a, b; one variable.
std::shared_ptr<const Program> lineProgram() {
  const std::vector<int32_t> code = {kMagic, kVersion, 5, 2, 1, 0,  // header: 5 instructions, 2 params, 1 var
                                     kParam, 0, 0,                  // 0: a
                                     kVar, 0, 0,                    // 1: x
                                     kMul, 0, 1,                    // 2: a x
                                     kParam, 1, 0,                  // 3: b
                                     kAdd, 2, 3};                   // 4: + b
  return Program::verify(code.data(), static_cast<int64_t>(code.size()), nullptr, 0);
}

void testCancelCheck() {
  CancelCheck never;
  bool neverStopped = false;
  for (int k = 0; k < 10 * kClockStride; ++k) neverStopped = neverStopped || never.stop();
  check(!neverStopped, "a default CancelCheck never stops");

  int32_t word = 0;
  CancelCheck watching(&word, kNever);
  check(!watching.stop(), "a clear word does not stop");
  word = 1;
  check(watching.stop(), "a set word stops at the next check");
  word = 0;
  check(watching.stop(), "once stopped, a check stays stopped");

  int32_t clear = 0;
  CancelCheck past(&clear, steadyMs() - 1.0);
  check(past.stop(), "a deadline already passed stops at the first check (the clock is read then)");

  CancelCheck future(&clear, steadyMs() + 60'000.0);
  bool stopped = false;
  for (int k = 0; k < 10 * kClockStride; ++k) stopped = stopped || future.stop();
  check(!stopped, "a deadline a minute away does not stop");

  CancelCheck deadlineOnly(nullptr, steadyMs() - 1.0);
  check(deadlineOnly.stop(), "a deadline works without a word");
}

void testReduceRowBlocks() {
  const int q = 3;
  const int64_t n = 5000;
  const int64_t nBlocks = blockCount(n);
  Rng rng(5);
  std::vector<double> blocks(static_cast<size_t>(nBlocks) * kBlockSize * q);
  for (double& v : blocks) v = rng.symmetric();

  const std::vector<double> plain = reduceRowBlocks(blocks.data(), q, n, 0, nBlocks, RowBlockOptions{});
  int32_t word = 0;
  CancelCheck clear(&word, kNever);
  RowBlockOptions watched;
  watched.cancel = &clear;
  const std::vector<double> checked = reduceRowBlocks(blocks.data(), q, n, 0, nBlocks, watched);
  check(!plain.empty() && plain.size() == checked.size() &&
            std::memcmp(plain.data(), checked.data(), plain.size() * sizeof(double)) == 0,
        "a clear cancel buffer changes no bit of the roots");

  word = 1;
  CancelCheck set(&word, kNever);
  RowBlockOptions stopping;
  stopping.cancel = &set;
  std::vector<double> costs(nBlocks, -7.0);
  stopping.costs = costs.data();
  stopping.loss = Loss::SoftL1;
  check(reduceRowBlocks(blocks.data(), q, n, 0, nBlocks, stopping).empty(), "a set word: reduceRowBlocks returns no roots");
  check(costs[0] == -7.0, "a set word: no block was reduced");
}

void testFitCurves() {
  const int64_t m = 40;
  const int64_t n = 8;
  std::vector<double> x(n), y(m * n);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<double>(i);
  for (int64_t c = 0; c < m; ++c)
    for (int64_t i = 0; i < n; ++i) y[c * n + i] = (1.0 + 0.01 * c) * x[i] + 2.0 + 1e-3 * std::sin(double(c * n + i));
  const double* vars[] = {x.data()};
  const double p0[] = {1.0, 1.0};
  BatchProblem problem;
  problem.program = lineProgram();
  problem.x = vars;
  problem.nVars = 1;
  problem.y = y.data();
  problem.yLength = m * n;
  problem.nCurves = m;
  problem.pointsPerCurve = n;
  problem.p0 = p0;
  problem.ftol = problem.xtol = 1e-12;
  std::vector<double> params(m * 2, -7.0), stdErrors(m * 2), chi2(m), iterations(m), nfev(m);
  std::vector<uint8_t> status(m, 255);
  const BatchOutput out{params.data(), stdErrors.data(), chi2.data(), iterations.data(), nfev.data(), status.data()};

  int32_t word = 0;
  CancelCheck clear(&word, kNever);
  problem.cancel = &clear;
  check(fitCurves(problem, 0, m / 2, out) == m / 2, "a clear word: every curve of the range is fitted");
  check(status[0] != 255 && status[m / 2 - 1] != 255, "a clear word: the range's curves are written");

  word = 1;
  CancelCheck set(&word, kNever);
  problem.cancel = &set;
  check(fitCurves(problem, m / 2, m, out) == 0, "a set word: no curve is fitted, and fitCurves says so");
  check(status[m / 2] == 255 && params[2 * (m - 1)] == -7.0, "a set word: the range is left as it was");

  CancelCheck late(nullptr, steadyMs() - 1.0);
  problem.cancel = &late;
  check(fitCurves(problem, m / 2, m, out) == 0, "a passed deadline: no curve is fitted");
  check(fitCurves(problem, 3, 3, out) == 0, "an empty range fits nothing");
}

}  // namespace

int main() {
  const std::pair<const char*, void (*)()> tests[] = {
      {"CancelCheck", testCancelCheck},
      {"reduceRowBlocks", testReduceRowBlocks},
      {"fitCurves", testFitCurves},
  };
  return runTests(tests);
}
