// Tests of the data checks (native/kernel/columns.hpp): the response scan's
// total sum of squares against a long-double two-pass reference, the
// invalid-value indices it reports, firstNonFinite, and the per-block audit
// (blockMoments, mergeMoments) the first pass runs, which must agree with the
// scan to the last bit and flag exactly the blocks holding a bad value.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "check.hpp"
#include "columns.hpp"
#include "layout.hpp"

using namespace nlfit_test;

namespace {

long double referenceTss(const std::vector<double>& y, const std::vector<double>* sigma) {
  long double w = 0, wy = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const long double wi = sigma ? 1.0L / ((long double)(*sigma)[i] * (*sigma)[i]) : 1.0L;
    w += wi;
    wy += wi * y[i];
  }
  const long double mean = wy / w;
  long double t = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const long double wi = sigma ? 1.0L / ((long double)(*sigma)[i] * (*sigma)[i]) : 1.0L;
    t += wi * (y[i] - mean) * (y[i] - mean);
  }
  return t;
}

void testAccuracy() {
  // Sizes around the chunk boundary, and a large offset that ruins the
  // one-pass sum-of-squares formula (cancellation) but not a stable scan.
  for (size_t n : {1ul, 2ul, 31ul, 33ul, 511ul, 512ul, 513ul, 4097ul, 12289ul, 1000003ul}) {
    for (double offset : {0.0, 1e9}) {
      std::vector<double> y(n), sigma(n);
      for (size_t i = 0; i < n; ++i) {
        y[i] = offset + std::sin(0.37 * i) + 0.001 * (i % 17);
        sigma[i] = 0.5 + 0.25 * std::cos(0.11 * i);
      }
      for (bool weighted : {false, true}) {
        const nlfit::ResponseScan scan = nlfit::scanResponse(y.data(), weighted ? sigma.data() : nullptr, n);
        const long double ref = referenceTss(y, weighted ? &sigma : nullptr);
        const double rel = ref == 0 ? std::fabs(scan.totalSumOfSquares) : std::fabs((scan.totalSumOfSquares - ref) / ref);
        // The data carry |offset| * eps of absolute rounding per value, so
        // compare at that scale for the offset case.
        const double tolerance = offset == 0 ? 1e-12 : 1e-6;
        check(scan.firstInvalidY == -1 && scan.firstInvalidSigma == -1,
              "valid data reports no invalid index (n=" + std::to_string(n) + ")");
        check(n == 1 ? scan.totalSumOfSquares == 0 : rel <= tolerance,
              "tss within " + std::to_string(tolerance) + " of the reference (n=" + std::to_string(n) +
                  ", offset=" + std::to_string(offset) + ", weighted=" + std::to_string(weighted) +
                  "): relative error " + std::to_string(rel));
        const nlfit::ResponseScan again = nlfit::scanResponse(y.data(), weighted ? sigma.data() : nullptr, n);
        check(std::memcmp(&again.totalSumOfSquares, &scan.totalSumOfSquares, sizeof(double)) == 0,
              "the scan is bitwise repeatable");
      }
    }
  }
}

void testInvalid() {
  const size_t n = 20000;
  std::vector<double> y(n, 1.0), sigma(n, 2.0);
  for (size_t i = 0; i < n; ++i) y[i] = i % 7;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {nan, inf, -inf}) {
    for (size_t at : {0ul, 4095ul, 4096ul, 19999ul}) {
      std::vector<double> yy(y);
      yy[at] = bad;
      const nlfit::ResponseScan scan = nlfit::scanResponse(yy.data(), nullptr, n);
      check(scan.firstInvalidY == static_cast<int64_t>(at), "invalid y " + std::to_string(bad) + " found at " + std::to_string(at));
      check(std::isnan(scan.totalSumOfSquares), "no tss for invalid y");
      check(nlfit::firstNonFinite(yy.data(), n) == static_cast<int64_t>(at), "firstNonFinite finds " + std::to_string(at));
    }
  }
  for (double bad : {0.0, -1.0, -0.0, nan, inf, -inf}) {
    std::vector<double> s(sigma);
    s[12345] = bad;
    const nlfit::ResponseScan scan = nlfit::scanResponse(y.data(), s.data(), n);
    check(scan.firstInvalidSigma == 12345, "invalid sigma " + std::to_string(bad) + " found");
    check(scan.firstInvalidY == -1, "y still valid beside an invalid sigma");
  }
  std::vector<double> s(sigma);
  s[3] = 1e-200;  // 1/sigma^2 overflows: the weight is not finite
  const nlfit::ResponseScan tiny = nlfit::scanResponse(y.data(), s.data(), n);
  check(tiny.firstInvalidSigma == 3, "a sigma whose weight 1/sigma^2 overflows is reported as invalid");
  check(nlfit::firstNonFinite(y.data(), n) == -1, "firstNonFinite on finite data");
  {
    // An invalid sigma early and an invalid y in a later block: both are named.
    std::vector<double> yy(y), ss(sigma);
    ss[100] = -2.0;
    yy[15000] = nan;
    const nlfit::ResponseScan both = nlfit::scanResponse(yy.data(), ss.data(), n);
    check(both.firstInvalidSigma == 100 && both.firstInvalidY == 15000,
          "invalid sigma and a later invalid y are both located (" + std::to_string(both.firstInvalidSigma) + ", " +
              std::to_string(both.firstInvalidY) + ")");
  }
  check(nlfit::firstNonFinite(y.data(), 0) == -1, "firstNonFinite on no data");
}

// Audits blocks [0, nBlocks) of the columns into moments, as a pass does.
std::vector<double> auditBlocks(const nlfit::Columns& cols, int64_t n) {
  const int64_t nBlocks = (n + nlfit::kBlockSize - 1) / nlfit::kBlockSize;
  std::vector<double> moments(3 * nBlocks, std::numeric_limits<double>::quiet_NaN());
  for (int64_t b = 0; b < nBlocks; ++b) {
    const int rows = static_cast<int>(std::min<int64_t>(nlfit::kBlockSize, n - b * nlfit::kBlockSize));
    nlfit::blockMoments(cols, b * nlfit::kBlockSize, rows, moments.data() + 3 * b);
  }
  return moments;
}

void testBlockAudit() {
  for (size_t n : {1ul, 511ul, 512ul, 513ul, 100003ul}) {
    std::vector<double> x(n), y(n), sigma(n);
    for (size_t i = 0; i < n; ++i) {
      x[i] = 0.001 * i;
      y[i] = 1e6 + std::cos(0.23 * i);
      sigma[i] = 0.1 + 0.05 * std::sin(0.07 * i);
    }
    const double* vars[] = {x.data()};
    for (bool weighted : {false, true}) {
      const nlfit::Columns cols{vars, 1, y.data(), weighted ? sigma.data() : nullptr};
      const std::vector<double> moments = auditBlocks(cols, n);
      int64_t firstInvalid = 7;
      const double tss = nlfit::mergeMoments(moments.data(), moments.size() / 3, &firstInvalid);
      const nlfit::ResponseScan scan = nlfit::scanResponse(y.data(), cols.sigma, n);
      check(firstInvalid == -1, "valid columns: no block flagged (n=" + std::to_string(n) + ")");
      check(std::memcmp(&tss, &scan.totalSumOfSquares, sizeof(double)) == 0,
            "merged block moments equal the column scan bitwise (n=" + std::to_string(n) +
                ", weighted=" + std::to_string(weighted) + ")");
    }
  }
  // Each kind of bad value flags its block, and the merge names the first flagged block.
  const size_t n = 5000;
  std::vector<double> x(n, 1.0), y(n, 2.0), sigma(n, 0.5);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    const char* what;
    std::vector<double>* column;
    size_t at;
    double bad;
  };
  for (const Case& c : {Case{"x NaN", &x, 3000, nan}, Case{"x -inf", &x, 4999, -inf}, Case{"y inf", &y, 0, inf},
                        Case{"y NaN", &y, 1024, nan}, Case{"sigma 0", &sigma, 513, 0.0},
                        Case{"sigma < 0", &sigma, 2047, -1.0}, Case{"sigma tiny", &sigma, 100, 1e-200}}) {
    const double saved = (*c.column)[c.at];
    (*c.column)[c.at] = c.bad;
    const double* vars[] = {x.data()};
    const nlfit::Columns cols{vars, 1, y.data(), sigma.data()};
    const std::vector<double> moments = auditBlocks(cols, n);
    int64_t firstInvalid = -1;
    const double tss = nlfit::mergeMoments(moments.data(), moments.size() / 3, &firstInvalid);
    check(firstInvalid == static_cast<int64_t>(c.at / nlfit::kBlockSize) && std::isnan(tss),
          std::string("audit flags the block of ") + c.what + " (got block " + std::to_string(firstInvalid) + ")");
    (*c.column)[c.at] = saved;
  }
  // A block that no pass reached (still NaN) counts as flagged.
  std::vector<double> moments(9, std::numeric_limits<double>::quiet_NaN());
  moments[0] = 512;
  moments[1] = 0;
  moments[2] = 0;
  int64_t firstInvalid = -1;
  nlfit::mergeMoments(moments.data(), 3, &firstInvalid);
  check(firstInvalid == 1, "a block left unaudited is flagged");
}

}  // namespace

int main() {
  testAccuracy();
  testInvalid();
  testBlockAudit();
  return report();
}
