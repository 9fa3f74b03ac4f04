// Unit tests of the TSQR reduction (native/kernel/tsqr.hpp): block
// factorization, merging, the norm, and the reproducibility contract of the
// canonical tree (any partition of the blocks gives the same bits).
//
// A standalone program: prints one line per failed check and, last,
// "N passed, M failed"; exits non-zero when a check failed. Built and run by
// test/native.test.ts with sanitizers, so every case must also be free of
// undefined behaviour; the cases that feed finishTree hostile input run in a
// child process so that a sanitizer abort is reported as one failure.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "check.hpp"
#include "layout.hpp"
#include "tsqr.hpp"

using namespace nlfit;
using namespace nlfit_test;

namespace {

template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);
}

// A kBlockSize x q column-major block aligned as blockFactor requires.
class Block {
 public:
  explicit Block(int q) : q_(q) {
    const size_t bytes = sizeof(double) * kBlockSize * static_cast<size_t>(q);
    data_ = static_cast<double*>(std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign));
    std::memset(data_, 0, bytes);
  }
  Block(const Block& other) : Block(other.q_) {
    std::memcpy(data_, other.data_, sizeof(double) * kBlockSize * static_cast<size_t>(q_));
  }
  Block& operator=(const Block&) = delete;
  ~Block() { std::free(data_); }

  double& at(int row, int col) { return data_[static_cast<size_t>(col) * kBlockSize + row]; }
  double at(int row, int col) const { return data_[static_cast<size_t>(col) * kBlockSize + row]; }
  double* data() { return data_; }
  int q() const { return q_; }

 private:
  int q_;
  double* data_;
};

// Rows [0, rows) uniform on [-1, 1) times the column's scale; the rest zero.
Block randomBlock(Rng& rng, int q, int rows = kBlockSize, const std::vector<double>& columnScale = {}) {
  Block a(q);
  for (int j = 0; j < q; ++j) {
    const double scale = columnScale.empty() ? 1.0 : columnScale[j];
    for (int i = 0; i < rows; ++i) a.at(i, j) = scale * rng.symmetric();
  }
  return a;
}

using Gram = std::vector<long double>;

Gram blockGram(const Block& a) {
  const int q = a.q();
  Gram g(static_cast<size_t>(q) * q, 0.0L);
  for (int i = 0; i < q; ++i)
    for (int j = 0; j < q; ++j) {
      long double sum = 0.0L;
      for (int k = 0; k < kBlockSize; ++k) sum += static_cast<long double>(a.at(k, i)) * a.at(k, j);
      g[i * q + j] = sum;
    }
  return g;
}

// R^T R for a row-major q x q factor.
Gram factorGram(const double* r, int q) {
  Gram g(static_cast<size_t>(q) * q, 0.0L);
  for (int i = 0; i < q; ++i)
    for (int j = 0; j < q; ++j) {
      long double sum = 0.0L;
      for (int k = 0; k < q; ++k) sum += static_cast<long double>(r[k * q + i]) * r[k * q + j];
      g[i * q + j] = sum;
    }
  return g;
}

// max |G_ij - H_ij| / sqrt(G_ii G_jj): the error in units of the columns'
// norms, which is what a backward-stable QR bounds.
double gramError(const Gram& expected, const Gram& actual, int q) {
  long double maxDiag = 0.0L;
  for (int i = 0; i < q; ++i) maxDiag = std::max(maxDiag, expected[i * q + i]);
  long double worst = 0.0L;
  for (int i = 0; i < q; ++i)
    for (int j = 0; j < q; ++j) {
      long double unit = std::sqrt(expected[i * q + i] * expected[j * q + j]);
      if (unit == 0.0L) unit = maxDiag > 0.0L ? maxDiag : 1.0L;
      worst = std::max(worst, std::fabs(expected[i * q + j] - actual[i * q + j]) / unit);
    }
  return static_cast<double>(worst);
}

bool isUpperTriangular(const double* r, int q) {
  for (int i = 1; i < q; ++i)
    for (int j = 0; j < i; ++j)
      if (r[i * q + j] != 0.0) return false;
  return true;
}

bool allFinite(const double* v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) return false;
  return true;
}

std::vector<double> factorOf(Block a) {
  std::vector<double> r(static_cast<size_t>(a.q()) * a.q());
  blockFactor(a.data(), a.q(), r.data());
  return r;
}

// Checks R^T R = A^T A and the triangle for one block.
void checkBlockFactor(const Block& a, double tol, const std::string& name) {
  const int q = a.q();
  const Gram expected = blockGram(a);
  const std::vector<double> r = factorOf(a);
  check(isUpperTriangular(r.data(), q), name + ": R is upper triangular");
  check(allFinite(r.data(), r.size()), name + ": R is finite");
  const double err = gramError(expected, factorGram(r.data(), q), q);
  check(err <= tol, name + format(": R^T R = A^T A (relative error %.3g, tolerance %.3g)", err, tol));
}

void testBlockFactorRandom() {
  Rng rng(1);
  for (int q = 2; q <= 9; ++q) {
    checkBlockFactor(randomBlock(rng, q), 1e-13, format("blockFactor q=%d uniform", q));
    std::vector<double> graded(q);
    for (int j = 0; j < q; ++j) graded[j] = std::pow(10.0, 2 * j - q);
    checkBlockFactor(randomBlock(rng, q, kBlockSize, graded), 1e-13, format("blockFactor q=%d graded columns", q));
    // Nearly dependent columns: the last is the first plus a 1e-9 perturbation.
    Block nearly = randomBlock(rng, q);
    for (int i = 0; i < kBlockSize; ++i) nearly.at(i, q - 1) = nearly.at(i, 0) + 1e-9 * rng.symmetric();
    checkBlockFactor(nearly, 1e-13, format("blockFactor q=%d nearly dependent columns", q));
  }
}

void testBlockFactorZeroRows() {
  Rng rng(2);
  const int q = 4;
  for (int rows : {0, 1, 2, 3, 4, 5, 100, 511, 512}) {
    const Block a = randomBlock(rng, q, rows);
    const std::string name = format("blockFactor with %d nonzero rows", rows);
    checkBlockFactor(a, 1e-13, name);
    const std::vector<double> r = factorOf(a);
    bool trailingRowsZero = true;
    for (int i = rows; i < q; ++i)
      for (int j = 0; j < q; ++j) trailingRowsZero = trailingRowsZero && r[i * q + j] == 0.0;
    check(trailingRowsZero, name + ": rows of R beyond the data rows are zero");
  }
}

void testBlockFactorZeroColumn() {
  Rng rng(3);
  const int q = 5;
  for (const std::vector<int>& zeroColumns : std::vector<std::vector<int>>{{0}, {2}, {4}, {1, 3}, {0, 1, 2, 3, 4}}) {
    Block a = randomBlock(rng, q);
    std::string list;
    for (int c : zeroColumns) {
      for (int i = 0; i < kBlockSize; ++i) a.at(i, c) = 0.0;
      list += format(" %d", c);
    }
    const std::string name = "blockFactor with zero column(s)" + list;
    checkBlockFactor(a, 1e-13, name);
    const std::vector<double> r = factorOf(a);
    bool zeroInR = true;
    for (int c : zeroColumns)
      for (int i = 0; i < q; ++i) zeroInR = zeroInR && r[i * q + c] == 0.0;
    check(zeroInR, name + ": the zero columns stay zero in R");
  }
}

// QR(A D) = Q (R D) for a positive diagonal D, so the factor of a block with
// columns scaled to extreme magnitudes must be the scaled factor of the
// unscaled block, without overflow or underflow on the way.
void testBlockFactorExtremeMagnitudes() {
  Rng rng(4);
  const int q = 3;
  const std::vector<std::vector<double>> scalings = {
      {1e200, 1e200, 1e200}, {1e-200, 1e-200, 1e-200}, {1e300, 1e300, 1e300},
      {1e-300, 1e-300, 1e-300}, {1e200, 1.0, 1e-200}, {1e-200, 1e200, 1.0}};
  for (const std::vector<double>& d : scalings) {
    const Block base = randomBlock(rng, q);
    Block scaled(base);
    for (int j = 0; j < q; ++j)
      for (int i = 0; i < kBlockSize; ++i) scaled.at(i, j) = base.at(i, j) * d[j];
    const std::vector<double> reference = factorOf(base);
    const std::vector<double> r = factorOf(scaled);
    const std::string name = format("blockFactor with columns scaled by %g, %g, %g", d[0], d[1], d[2]);
    check(allFinite(r.data(), r.size()), name + ": R is finite");
    double worst = 0.0;
    for (int j = 0; j < q; ++j) {
      double columnMax = 0.0;
      for (int i = 0; i < q; ++i) columnMax = std::max(columnMax, std::fabs(reference[i * q + j]));
      for (int i = 0; i < q; ++i) {
        const double expected = reference[i * q + j] * d[j];
        const double err = std::fabs(r[i * q + j] - expected) / (columnMax * d[j]);
        worst = std::max(worst, std::isnan(err) ? std::numeric_limits<double>::infinity() : err);
      }
    }
    check(worst <= 1e-13, name + format(": R = R(unscaled) D (relative error %.3g)", worst));
  }
}

void testBlockFactorNonFinite() {
  Rng rng(5);
  {
    const int q = 3;
    const Block base = randomBlock(rng, q);
    int missed = 0;
    std::string firstMiss;
    for (int j = 0; j < q; ++j)
      for (int i = 0; i < kBlockSize; ++i) {
        Block a(base);
        a.at(i, j) = std::numeric_limits<double>::quiet_NaN();
        const std::vector<double> r = factorOf(a);
        if (allFinite(r.data(), r.size()) && missed++ == 0) firstMiss = format("row %d column %d", i, j);
      }
    check(missed == 0, format("blockFactor q=3: a NaN at any of the %d positions gives a non-finite R (%d missed, first at %s)",
                              kBlockSize * q, missed, firstMiss.c_str()));
  }
  // Blocks with zero rows or a zero column take other paths through the
  // factorization (zero norms); a NaN must not be lost there either.
  const int q = 4;
  Block shortBlock = randomBlock(rng, q, 10);
  Block zeroColumn = randomBlock(rng, q);
  for (int i = 0; i < kBlockSize; ++i) zeroColumn.at(i, 0) = 0.0;
  struct Case {
    const char* name;
    const Block* block;
    int row, col;
    double value;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const Case cases[] = {
      {"short block, NaN in the zero rows", &shortBlock, 400, 2, nan},
      {"short block, NaN in the last row", &shortBlock, kBlockSize - 1, q - 1, nan},
      {"short block, NaN in row 0 of the residual column", &shortBlock, 0, q - 1, nan},
      {"zero first column, NaN in it", &zeroColumn, 7, 0, nan},
      {"zero first column, NaN in row 0 of column 1", &zeroColumn, 0, 1, nan},
      {"zero first column, NaN in row 1 of the last column", &zeroColumn, 1, q - 1, nan},
      {"+Infinity in the first column", &zeroColumn, 3, 1, inf},
      {"-Infinity in the residual column", &shortBlock, 2, q - 1, -inf},
  };
  for (const Case& c : cases) {
    Block a(*c.block);
    a.at(c.row, c.col) = c.value;
    const std::vector<double> r = factorOf(a);
    check(!allFinite(r.data(), r.size()), format("blockFactor q=%d, %s: R is not finite", q, c.name));
  }
}

std::vector<double> randomTriangle(Rng& rng, int q, double scale = 1.0) {
  std::vector<double> r(static_cast<size_t>(q) * q, 0.0);
  for (int i = 0; i < q; ++i)
    for (int j = i; j < q; ++j) r[i * q + j] = scale * rng.symmetric();
  return r;
}

void checkMerge(std::vector<double> r1, std::vector<double> r2, int q, const std::string& name) {
  Gram expected = factorGram(r1.data(), q);
  const Gram second = factorGram(r2.data(), q);
  for (size_t i = 0; i < expected.size(); ++i) expected[i] += second[i];
  mergeFactors(r1.data(), r2.data(), q);
  check(isUpperTriangular(r1.data(), q), name + ": merged R is upper triangular");
  check(allFinite(r1.data(), r1.size()), name + ": merged R is finite");
  const double err = gramError(expected, factorGram(r1.data(), q), q);
  check(err <= 1e-14, name + format(": R^T R = R1^T R1 + R2^T R2 (relative error %.3g)", err));
}

void testMergeFactors() {
  Rng rng(6);
  for (int q = 1; q <= 9; ++q) {
    checkMerge(randomTriangle(rng, q), randomTriangle(rng, q), q, format("mergeFactors q=%d", q));
    checkMerge(factorOf(randomBlock(rng, q)), factorOf(randomBlock(rng, q)), q,
               format("mergeFactors q=%d of two block factors", q));
    checkMerge(randomTriangle(rng, q), std::vector<double>(static_cast<size_t>(q) * q, 0.0), q,
               format("mergeFactors q=%d with a zero second factor", q));
    checkMerge(std::vector<double>(static_cast<size_t>(q) * q, 0.0), randomTriangle(rng, q), q,
               format("mergeFactors q=%d with a zero first factor", q));
    checkMerge(randomTriangle(rng, q, 1e6), randomTriangle(rng, q, 1e-6), q,
               format("mergeFactors q=%d of factors 1e12 apart", q));
  }
  {
    double r1 = 3.0, r2 = -4.0;
    mergeFactors(&r1, &r2, 1);
    check(std::fabs(r1) == 5.0, format("mergeFactors q=1 of 3 and -4 gives |R| = 5 (got %.17g)", r1));
  }
  // Extreme magnitudes: the merge of scaled factors is the scaled merge.
  for (double scale : {1e200, 1e-200, 1e300, 1e-300}) {
    const int q = 4;
    std::vector<double> a = randomTriangle(rng, q), b = randomTriangle(rng, q);
    std::vector<double> sa(a), sb(b);
    for (size_t i = 0; i < a.size(); ++i) {
      sa[i] *= scale;
      sb[i] *= scale;
    }
    mergeFactors(a.data(), b.data(), q);
    mergeFactors(sa.data(), sb.data(), q);
    double worst = 0.0, largest = 0.0;
    for (double v : a) largest = std::max(largest, std::fabs(v));
    for (size_t i = 0; i < a.size(); ++i) {
      const double err = std::fabs(sa[i] - a[i] * scale) / (largest * scale);
      worst = std::max(worst, std::isnan(err) ? std::numeric_limits<double>::infinity() : err);
    }
    check(allFinite(sa.data(), sa.size()) && worst <= 1e-14,
          format("mergeFactors of factors scaled by %g: the scaled merge, finite (relative error %.3g)", scale, worst));
  }
}

void testStableNorm() {
  struct Case {
    const char* name;
    std::vector<double> x;
    int64_t stride;
    double expected;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const Case cases[] = {
      {"3, 4", {3.0, 4.0}, 1, 5.0},
      {"empty", {}, 1, 0.0},
      {"zeros", {0.0, 0.0, 0.0}, 1, 0.0},
      {"3e200, 4e200 (squares overflow)", {3e200, 4e200}, 1, 5e200},
      {"3e-200, 4e-200 (squares underflow to zero)", {3e-200, 4e-200}, 1, 5e-200},
      {"3e-155, 4e-155 (squares subnormal)", {3e-155, 4e-155}, 1, 5e-155},
      {"1e308, 1e308", {1e308, 1e308}, 1, std::sqrt(2.0) * 1e308},
      {"stride 2 over 3, 9, 4, 9", {3.0, 9.0, 4.0, 9.0}, 2, 5.0},
      {"stride 3 over tiny values", {3e-200, 1.0, 1.0, 4e-200, 1.0, 1.0}, 3, 5e-200},
  };
  for (const Case& c : cases) {
    const int64_t n = static_cast<int64_t>((c.x.size() + c.stride - 1) / c.stride);
    const double got = stableNorm(c.x.data(), n, c.stride);
    check(std::fabs(got - c.expected) <= 4e-16 * c.expected,
          format("stableNorm(%s) = %.17g (got %.17g)", c.name, c.expected, got));
  }
  const std::vector<double> withNan = {1.0, nan, 2.0}, nanFirst = {nan, 1.0}, withInf = {1.0, -inf, 2.0},
                            infAndTiny = {1e-300, inf};
  check(std::isnan(stableNorm(withNan.data(), 3)), "stableNorm of a vector with a NaN is NaN");
  check(std::isnan(stableNorm(nanFirst.data(), 2)), "stableNorm of NaN, 1 is NaN");
  check(stableNorm(withInf.data(), 3) == inf, "stableNorm of a vector with -Infinity is +Infinity");
  check(stableNorm(infAndTiny.data(), 2) == inf, "stableNorm of 1e-300, Infinity is +Infinity");
}

// ---------------------------------------------------------------------------
// The canonical tree and the reproducibility contract.

using Factors = std::vector<std::vector<double>>;

Factors randomBlockFactors(Rng& rng, int64_t nBlocks, int q) {
  Factors factors;
  factors.reserve(static_cast<size_t>(nBlocks));
  for (int64_t b = 0; b < nBlocks; ++b) {
    // Short blocks too, like the last block of real data.
    const int rows = rng.below(8) == 0 ? 1 + static_cast<int>(rng.below(kBlockSize)) : kBlockSize;
    factors.push_back(factorOf(randomBlock(rng, q, rows)));
  }
  return factors;
}

// The tree as tsqr.hpp defines it, written out recursively: node (level, k)
// covers blocks [k 2^level, min((k+1) 2^level, n)) and is merge(left, right),
// or its left child when the right child starts at or past n.
std::vector<double> canonicalNode(const Factors& factors, int level, int64_t index, int q) {
  if (level == 0) return factors[static_cast<size_t>(index)];
  std::vector<double> left = canonicalNode(factors, level - 1, 2 * index, q);
  const int64_t rightStart = (2 * index + 1) << (level - 1);
  if (rightStart >= static_cast<int64_t>(factors.size())) return left;
  std::vector<double> right = canonicalNode(factors, level - 1, 2 * index + 1, q);
  mergeFactors(left.data(), right.data(), q);
  return left;
}

std::vector<double> canonicalRoot(const Factors& factors, int q) {
  int top = 0;
  while ((int64_t{1} << top) < static_cast<int64_t>(factors.size())) ++top;
  return canonicalNode(factors, top, 0, q);
}

std::vector<double> reduceRange(const Factors& factors, int64_t first, int64_t last, int q) {
  RangeReducer reducer(q);
  for (int64_t b = first; b < last; ++b) reducer.push(b, factors[static_cast<size_t>(b)].data());
  return reducer.packedRoots();
}

// The maximal aligned subtrees of [first, last), found greedily from the left.
std::vector<std::pair<int, int64_t>> expectedRoots(int64_t first, int64_t last) {
  std::vector<std::pair<int, int64_t>> roots;
  while (first < last) {
    int level = 0;
    while ((first % (int64_t{2} << level)) == 0 && first + (int64_t{2} << level) <= last) ++level;
    roots.push_back({level, first >> level});
    first += int64_t{1} << level;
  }
  return roots;
}

// Reduces each range [cuts[i], cuts[i+1]) on its own and finishes the tree
// from the packed roots, handed over in shuffled order. With scatterNodes the
// nodes of all ranges are also shuffled individually into one array.
std::vector<double> reducePartition(const Factors& factors, const std::vector<int64_t>& cuts, int q, Rng& rng,
                                    bool scatterNodes, std::string& problem) {
  std::vector<std::vector<double>> packed;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    packed.push_back(reduceRange(factors, cuts[i], cuts[i + 1], q));
    const std::vector<std::pair<int, int64_t>> expected = expectedRoots(cuts[i], cuts[i + 1]);
    const std::vector<double>& roots = packed.back();
    const size_t stride = static_cast<size_t>(packedNodeSize(q));
    bool same = roots.size() == expected.size() * stride;
    for (size_t n = 0; same && n < expected.size(); ++n)
      same = roots[n * stride] == expected[n].first && roots[n * stride + 1] == static_cast<double>(expected[n].second);
    if (!same && problem.empty())
      problem = format("range [%lld, %lld) did not reduce to its maximal aligned subtrees",
                       static_cast<long long>(cuts[i]), static_cast<long long>(cuts[i + 1]));
  }
  if (rng.below(2) == 0) packed.push_back({});  // a holder with no blocks
  if (scatterNodes) {
    const size_t stride = static_cast<size_t>(packedNodeSize(q));
    std::vector<std::vector<double>> nodes;
    for (const std::vector<double>& roots : packed)
      for (size_t off = 0; off < roots.size(); off += stride)
        nodes.emplace_back(roots.begin() + static_cast<std::ptrdiff_t>(off),
                           roots.begin() + static_cast<std::ptrdiff_t>(off + stride));
    shuffle(nodes, rng);
    std::vector<double> all;
    for (const std::vector<double>& node : nodes) all.insert(all.end(), node.begin(), node.end());
    packed.assign(1, all);
  }
  shuffle(packed, rng);
  std::vector<std::pair<const double*, int64_t>> views;
  for (const std::vector<double>& roots : packed) views.push_back({roots.data(), static_cast<int64_t>(roots.size())});
  std::vector<double> r(static_cast<size_t>(q) * q);
  finishTree(views, static_cast<int64_t>(factors.size()), q, r.data());
  return r;
}

std::vector<int64_t> randomCuts(int64_t nBlocks, int64_t parts, Rng& rng) {
  std::vector<int64_t> inner;
  for (int64_t b = 1; b < nBlocks; ++b) inner.push_back(b);
  shuffle(inner, rng);
  inner.resize(static_cast<size_t>(std::min<int64_t>(parts - 1, nBlocks - 1)));
  std::vector<int64_t> cuts = {0, nBlocks};
  cuts.insert(cuts.end(), inner.begin(), inner.end());
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

void testReproducibility() {
  Rng rng(7);
  struct Setting {
    int64_t nBlocks;
    int q;
  };
  const Setting settings[] = {{1, 4}, {2, 4}, {3, 4}, {5, 4}, {8, 4}, {13, 4}, {100, 4}, {1000, 4}, {13, 7}, {100, 2}};
  for (const Setting& s : settings) {
    const int64_t n = s.nBlocks;
    const int q = s.q;
    const Factors factors = randomBlockFactors(rng, n, q);
    const std::vector<double> canonical = canonicalRoot(factors, q);
    std::string problem;
    const std::vector<double> whole = reducePartition(factors, {0, n}, q, rng, false, problem);
    const size_t bytes = whole.size() * sizeof(double);
    const std::string setting = format("reproducibility nBlocks=%lld q=%d", static_cast<long long>(n), q);
    check(std::memcmp(whole.data(), canonical.data(), bytes) == 0,
          setting + ": one range gives the documented canonical tree, bit for bit");

    std::vector<std::pair<std::string, std::vector<int64_t>>> partitions;
    for (int64_t parts : {2, 3, 7, 16, 50}) {
      if (parts > n) continue;
      for (int trial = 0; trial < 4; ++trial)
        partitions.push_back({format("%lld random parts", static_cast<long long>(parts)), randomCuts(n, parts, rng)});
    }
    {
      // Mostly single-block ranges with a few long ones.
      std::vector<int64_t> cuts = {0};
      while (cuts.back() < n) cuts.push_back(std::min(n, cuts.back() + (rng.below(3) == 0 ? 1 + rng.below(40) : 1)));
      partitions.push_back({"short and single-block ranges", cuts});
    }
    {
      std::vector<int64_t> cuts;
      for (int64_t b = 0; b <= n; ++b) cuts.push_back(b);
      partitions.push_back({"every block its own range", cuts});
    }
    if (n > 2) partitions.push_back({"the first and the last block alone", {0, 1, n - 1, n}});
    if (n > 4) partitions.push_back({"ranges straddling aligned boundaries", {0, 3, 5, n}});

    int mismatches = 0;
    std::string firstMismatch;
    for (const auto& [name, cuts] : partitions) {
      for (bool scatter : {false, true}) {
        const std::vector<double> r = reducePartition(factors, cuts, q, rng, scatter, problem);
        if (std::memcmp(r.data(), whole.data(), bytes) != 0 && mismatches++ == 0)
          firstMismatch = name + (scatter ? " (nodes scattered)" : "");
      }
    }
    check(mismatches == 0, setting + format(": all %zu partitions give the same bits (%d differ, first: %s)",
                                            2 * partitions.size(), mismatches, firstMismatch.c_str()));
    check(problem.empty(), setting + ": " + problem);
  }
}

// Runs body in a child process and reports how it ended, so that a crash or a
// sanitizer abort inside finishTree is one failed check, not the end of the
// program.
enum class Ending { ReductionErrorThrown, OtherExceptionThrown, Returned, Crashed };

Ending runIsolated(const std::function<void()>& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(2);
  }
  if (pid == 0) {
    int code = 10;
    try {
      body();
    } catch (const ReductionError&) {
      code = 11;
    } catch (...) {
      code = 12;
    }
    std::fflush(stdout);
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return Ending::Crashed;
  switch (WEXITSTATUS(status)) {
    case 10: return Ending::Returned;
    case 11: return Ending::ReductionErrorThrown;
    case 12: return Ending::OtherExceptionThrown;
    default: return Ending::Crashed;
  }
}

const char* describe(Ending ending) {
  switch (ending) {
    case Ending::ReductionErrorThrown: return "threw ReductionError";
    case Ending::OtherExceptionThrown: return "threw another exception";
    case Ending::Returned: return "returned normally";
    case Ending::Crashed: return "crashed or was stopped by a sanitizer";
  }
  return "?";
}

void expectReductionError(const std::string& name, const std::function<void()>& body) {
  const Ending ending = runIsolated(body);
  check(ending == Ending::ReductionErrorThrown, name + ": throws ReductionError (it " + describe(ending) + ")");
}

void testFinishTreeErrors() {
  Rng rng(8);
  const int q = 3;
  const int64_t n = 8;
  const Factors factors = randomBlockFactors(rng, n, q);
  const int stride = packedNodeSize(q);
  auto finish = [q](const std::vector<std::vector<double>>& packed, int64_t nBlocks) {
    std::vector<std::pair<const double*, int64_t>> views;
    for (const std::vector<double>& p : packed) views.push_back({p.data(), static_cast<int64_t>(p.size())});
    std::vector<double> r(static_cast<size_t>(q) * q);
    finishTree(views, nBlocks, q, r.data());
  };
  auto range = [&](int64_t first, int64_t last) { return reduceRange(factors, first, last, q); };
  // A single node with a chosen level and index (the factor of block 0).
  auto node = [&](double level, double index) {
    std::vector<double> v = {level, index};
    v.insert(v.end(), factors[0].begin(), factors[0].end());
    return v;
  };

  {
    // The valid partition these cases are built from must succeed.
    const Ending ending = runIsolated([&] { finish({range(0, 3), range(3, 8)}, n); });
    check(ending == Ending::Returned, std::string("finishTree of two valid ranges succeeds (it ") + describe(ending) + ")");
  }
  expectReductionError("finishTree with block 4 missing", [&] { finish({range(0, 4), range(5, 8)}, n); });
  expectReductionError("finishTree with the last block missing", [&] { finish({range(0, 7)}, n); });
  expectReductionError("finishTree with the first block missing", [&] { finish({range(1, 8)}, n); });
  expectReductionError("finishTree with nothing supplied", [&] { finish({}, n); });
  expectReductionError("finishTree with only an empty array", [&] { finish({{}}, n); });
  expectReductionError("finishTree with one range supplied twice", [&] { finish({range(0, 8), range(0, 8)}, n); });
  expectReductionError("finishTree with block 5 twice", [&] { finish({range(0, 8), range(5, 6)}, n); });
  expectReductionError("finishTree with overlapping ranges [0,5) and [3,8)", [&] { finish({range(0, 5), range(3, 8)}, n); });
  expectReductionError("finishTree with overlapping ranges and a gap of equal size",
                       [&] { finish({range(0, 4), range(2, 3), range(5, 8)}, n); });
  expectReductionError("finishTree with nested ranges [0,8) and [2,4)", [&] { finish({range(0, 8), range(2, 4)}, n); });
  expectReductionError("finishTree with nBlocks = 0", [&] { finish({}, 0); });
  expectReductionError("finishTree with nBlocks = 0 and a node", [&] { finish({node(0, 0)}, 0); });
  expectReductionError("finishTree with nBlocks = -1", [&] { finish({node(0, 0)}, -1); });
  expectReductionError("finishTree with more blocks than supplied", [&] { finish({range(0, 8)}, 9); });
  expectReductionError("finishTree with a range reduced over more blocks than the fit has (8 for 5)",
                       [&] { finish({range(0, 8)}, 5); });
  expectReductionError("finishTree with a complete subtree reaching past nBlocks (level 2, index 1 for 6)",
                       [&] { finish({range(0, 4), node(2, 1)}, 6); });

  struct BadNode {
    const char* name;
    double level, index;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const BadNode badNodes[] = {
      {"level -1", -1, 0},           {"level 1.5", 1.5, 0},         {"level NaN", nan, 0},
      {"level 63", 63, 0},           {"level 1e300", 1e300, 0},     {"index -1", 0, -1},
      {"index 0.5", 0, 0.5},         {"index NaN", 0, nan},         {"index = nBlocks", 0, 8},
      {"index 1e19", 0, 1e19},       {"level 4, index 1 (past the last block)", 4, 1},
      {"level 40 (above the root)", 40, 0},
      {"level 62, index 2 (first block 2^63)", 62, 2},
      {"level 62, index 4 (first block 2^64)", 62, 4},
      {"level 61, index 7 (first block 7 * 2^61)", 61, 7},
  };
  for (const BadNode& bad : badNodes) {
    // The bad node comes with a valid reduction of all blocks, so only the
    // node itself can be the reason to refuse.
    expectReductionError(std::string("finishTree with a node at ") + bad.name,
                         [&] { finish({node(bad.level, bad.index), range(1, 8)}, n); });
  }
  for (int extra : {-1, 1, -stride + 1}) {
    expectReductionError(format("finishTree with a packed length of a whole number of nodes %+d", extra), [&] {
      std::vector<double> all = range(0, 8);
      all.resize(static_cast<size_t>(static_cast<int64_t>(all.size()) + extra), 0.0);
      finish({all}, n);
    });
  }
}

void testRangeReducerOrder() {
  Rng rng(9);
  const int q = 3;
  const Factors factors = randomBlockFactors(rng, 8, q);
  struct Case {
    const char* name;
    std::vector<int64_t> pushed;
    int64_t rejected;
  };
  const Case cases[] = {
      {"a gap (0 then 2)", {0}, 2},
      {"going back (5 then 4)", {5}, 4},
      {"the same block twice", {3}, 3},
      {"a gap after a merge (0, 1 then 3)", {0, 1}, 3},
      {"restarting after a merge (0..3 then 0)", {0, 1, 2, 3}, 0},
      {"a block inside a merged subtree (4..7 then 6)", {4, 5, 6, 7}, 6},
  };
  for (const Case& c : cases) {
    RangeReducer reducer(q);
    for (int64_t b : c.pushed) reducer.push(b, factors[static_cast<size_t>(b)].data());
    const std::vector<double> before = reducer.packedRoots();
    bool threw = false;
    try {
      reducer.push(c.rejected, factors[static_cast<size_t>(c.rejected)].data());
    } catch (const ReductionError&) {
      threw = true;
    }
    check(threw, std::string("RangeReducer rejects ") + c.name);
    const std::vector<double> after = reducer.packedRoots();
    check(before == after, std::string("RangeReducer keeps its roots after rejecting ") + c.name);
  }
  {
    // After a rejected push the reducer goes on from where it was.
    RangeReducer reducer(q);
    reducer.push(0, factors[0].data());
    try {
      reducer.push(2, factors[2].data());
    } catch (const ReductionError&) {
    }
    for (int64_t b = 1; b < 8; ++b) reducer.push(b, factors[static_cast<size_t>(b)].data());
    const std::vector<double> roots = reducer.packedRoots();
    std::vector<double> r(static_cast<size_t>(q) * q);
    finishTree({{roots.data(), static_cast<int64_t>(roots.size())}}, 8, q, r.data());
    const std::vector<double> canonical = canonicalRoot(factors, q);
    check(std::memcmp(r.data(), canonical.data(), r.size() * sizeof(double)) == 0,
          "RangeReducer after a rejected push still gives the canonical root");
  }
  {
    RangeReducer reducer(q);
    check(reducer.packedRoots().empty(), "RangeReducer with no blocks has no roots");
    reducer.push(5, factors[5].data());
    const std::vector<double> roots = reducer.packedRoots();
    check(roots.size() == static_cast<size_t>(packedNodeSize(q)) && roots[0] == 0 && roots[1] == 5 &&
              std::equal(factors[5].begin(), factors[5].end(), roots.begin() + 2),
          "RangeReducer of the single block 5 packs [0, 5, R5]");
  }
}

// ---------------------------------------------------------------------------
// Accuracy of the whole chain against a long-double Householder QR.

std::vector<long double> householderReference(std::vector<long double> a, int64_t m, int q) {
  std::vector<long double> r(static_cast<size_t>(q) * q, 0.0L);
  for (int k = 0; k < q; ++k) {
    long double* v = a.data() + static_cast<size_t>(k) * m;
    long double s = 0.0L;
    for (int64_t i = k; i < m; ++i) s += v[i] * v[i];
    s = std::sqrt(s);
    const long double beta = v[k] >= 0 ? -s : s;
    v[k] -= beta;
    const long double vv = 2.0L * s * (s + std::fabs(v[k] + beta));
    for (int j = k + 1; j < q; ++j) {
      long double* c = a.data() + static_cast<size_t>(j) * m;
      long double dot = 0.0L;
      for (int64_t i = k; i < m; ++i) dot += v[i] * c[i];
      const long double f = 2.0L * dot / vv;
      for (int64_t i = k; i < m; ++i) c[i] -= f * v[i];
      r[k * q + j] = c[k];
    }
    r[k * q + k] = beta;
  }
  return r;
}

void testChainAccuracy() {
  // Rows [1, x, exp(-x) | y - (1 + 2x + 3 exp(-x))] for 1e5 points, with
  // noise, so that the least-squares residual is a real one.
  const int64_t m = 100000;
  const int q = 4;
  Rng rng(10);
  std::vector<long double> columns(static_cast<size_t>(m) * q);
  auto cell = [&](int64_t i, int j) -> long double& { return columns[static_cast<size_t>(j) * m + i]; };
  for (int64_t i = 0; i < m; ++i) {
    const double x = 10.0 * static_cast<double>(i) / static_cast<double>(m);
    const double y = 1.0 + 2.0 * x + 3.0 * std::exp(-x) + 0.1 * rng.symmetric();
    cell(i, 0) = 1.0;
    cell(i, 1) = x;
    cell(i, 2) = std::exp(-x);
    cell(i, 3) = y - (1.1 + 1.9 * x + 2.5 * std::exp(-x));
  }
  const int64_t nBlocks = blockCount(m);
  RangeReducer first(q), second(q);
  for (int64_t b = 0; b < nBlocks; ++b) {
    Block block(q);
    const int64_t start = b * kBlockSize;
    const int rows = static_cast<int>(std::min<int64_t>(kBlockSize, m - start));
    for (int j = 0; j < q; ++j)
      for (int i = 0; i < rows; ++i) block.at(i, j) = static_cast<double>(cell(start + i, j));
    std::vector<double> r(static_cast<size_t>(q) * q);
    blockFactor(block.data(), q, r.data());
    (b < 77 ? first : second).push(b, r.data());
  }
  const std::vector<double> rootsA = first.packedRoots(), rootsB = second.packedRoots();
  std::vector<double> r(static_cast<size_t>(q) * q);
  finishTree({{rootsA.data(), static_cast<int64_t>(rootsA.size())}, {rootsB.data(), static_cast<int64_t>(rootsB.size())}},
             nBlocks, q, r.data());

  const std::vector<long double> reference = householderReference(columns, m, q);
  const int p = q - 1;
  // R_J^T R_J against J^T J summed in long double.
  Gram jtj(static_cast<size_t>(p) * p), rjtrj(static_cast<size_t>(p) * p);
  for (int a = 0; a < p; ++a)
    for (int b = 0; b < p; ++b) {
      long double sum = 0.0L, fromFactor = 0.0L;
      for (int64_t i = 0; i < m; ++i) sum += cell(i, a) * cell(i, b);
      for (int k = 0; k < p; ++k) fromFactor += static_cast<long double>(r[k * q + a]) * r[k * q + b];
      jtj[a * p + b] = sum;
      rjtrj[a * p + b] = fromFactor;
    }
  const double gramErr = gramError(jtj, rjtrj, p);
  check(gramErr <= 1e-14, format("TSQR chain 1e5 x 4: R_J^T R_J = J^T J (relative error %.3g)", gramErr));

  const long double lsResidual = std::fabs(reference[p * q + p]);
  const double lsErr = static_cast<double>(std::fabs(std::fabs(static_cast<long double>(r[p * q + p])) - lsResidual) / lsResidual);
  check(lsErr <= 1e-14, format("TSQR chain 1e5 x 4: least-squares residual norm |R[p][p]| (relative error %.3g)", lsErr));

  long double rss = 0.0L;
  for (int64_t i = 0; i < m; ++i) rss += cell(i, p) * cell(i, p);
  const double norm = stableNorm(r.data() + p, q, q);
  const double normErr = static_cast<double>(std::fabs(norm - std::sqrt(rss)) / std::sqrt(rss));
  check(normErr <= 1e-14, format("TSQR chain 1e5 x 4: |r| from the last column of R (relative error %.3g)", normErr));
}

}  // namespace

int main() {
  const std::pair<const char*, void (*)()> tests[] = {
      {"testBlockFactorRandom", testBlockFactorRandom},
      {"testBlockFactorZeroRows", testBlockFactorZeroRows},
      {"testBlockFactorZeroColumn", testBlockFactorZeroColumn},
      {"testBlockFactorExtremeMagnitudes", testBlockFactorExtremeMagnitudes},
      {"testBlockFactorNonFinite", testBlockFactorNonFinite},
      {"testMergeFactors", testMergeFactors},
      {"testStableNorm", testStableNorm},
      {"testReproducibility", testReproducibility},
      {"testFinishTreeErrors", testFinishTreeErrors},
      {"testRangeReducerOrder", testRangeReducerOrder},
      {"testChainAccuracy", testChainAccuracy},
  };
  return runTests(tests);
}
