// Tests of the whole-column scans (native/kernel/columns.hpp): the response
// scan's total sum of squares against a long-double two-pass reference, the
// invalid-value indices it reports, and firstNonFinite.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "check.hpp"
#include "columns.hpp"

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
  for (size_t n : {1ul, 2ul, 4095ul, 4096ul, 4097ul, 12289ul, 1000003ul}) {
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
  check(nlfit::firstNonFinite(y.data(), 0) == -1, "firstNonFinite on no data");
}

}  // namespace

int main() {
  testAccuracy();
  testInvalid();
  return report();
}
