#include "enumerate.hpp"

#include "bits.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <unordered_set>

namespace mtgfast {

namespace {

// SplitMix64: tiny, portable, good enough for sampling (identical streams on every platform).
struct SplitMix64 {
  std::uint64_t s;
  std::uint64_t next() noexcept {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform integer in [0, bound] (inclusive), unbiased (Lemire's method on the range).
  std::uint64_t below_inclusive(std::uint64_t bound) noexcept {
    if (bound == ~std::uint64_t{0}) return next();
    const std::uint64_t range = bound + 1;
    std::uint64_t low;
    std::uint64_t high = mul_hi_lo(next(), range, &low);
    if (low < range) {
      const std::uint64_t threshold = (0 - range) % range;
      while (low < threshold) high = mul_hi_lo(next(), range, &low);
    }
    return high;
  }
};

struct BinomTable {
  std::uint64_t c[65][65]{};
  BinomTable() {
    for (int n = 0; n <= 64; ++n) {
      c[n][0] = 1;
      for (int k = 1; k <= n; ++k) c[n][k] = c[n - 1][k - 1] + (k <= n - 1 ? c[n - 1][k] : 0);
    }
  }
};
const BinomTable& table() {
  static const BinomTable t;
  return t;
}

// Gosper's hack without the division: c is a power of two, so "/ c" is ">> ctz(m)". Five times
// faster than the division in the enumeration loops; only valid for m != 0 and no overflow.
inline mask_t gosper_next_fast(mask_t m) noexcept {
  const mask_t c = m & (~m + 1);
  const mask_t r = m + c;
  return (((r ^ m) >> 2) >> lowest_bit(m)) | r;
}

void check_k(int n, int k) {
  check_n_tasks(n);
  if (k < 1 || k > n)
    throw std::invalid_argument("k must be in [1, n_tasks=" + std::to_string(n) + "], got " +
                                std::to_string(k));
}

}  // namespace

std::uint64_t binomial(int n, int k) noexcept {
  if (n < 0 || n > 64 || k < 0 || k > n) return 0;
  return table().c[n][k];
}

std::uint64_t count_all_checked(int n, std::uint64_t max_bytes) {
  check_n_tasks(n);
  const std::uint64_t count = n == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1;
  if (count > max_bytes / sizeof(mask_t)) {
    throw std::length_error("enumerating all 2^" + std::to_string(n) + " - 1 combinations needs " +
                            std::to_string(double(count) * double(sizeof(mask_t)) /
                                           double(1ULL << 30)) +
                            " GiB, over the limit of " +
                            std::to_string(double(max_bytes) / double(1ULL << 30)) + " GiB");
  }
  return count;
}

void enumerate_k(int n, int k, Order order, mask_t* out) {
  check_k(n, k);
  const std::uint64_t count = binomial(n, k);
  if (order == Order::Lex) {
    // Lex order of index tuples == decreasing colex order of the bit-reversed masks.
    mask_t m = full_mask(k);
    for (std::uint64_t i = 0; i < count; ++i) {
      out[count - 1 - i] = bit_reverse(m, n);
      if (i + 1 < count) m = gosper_next_fast(m);
    }
  } else {
    mask_t m = full_mask(k);
    for (std::uint64_t i = 0; i < count; ++i) {
      out[i] = m;
      if (i + 1 < count) m = gosper_next_fast(m);
    }
  }
}

void enumerate_all(int n, Order order, mask_t* out) {
  check_n_tasks(n);
  if (order == Order::Binary) {
    const mask_t last = full_mask(n);
    for (mask_t m = 1, i = 0;; ++m, ++i) {
      out[i] = m;
      if (m == last) break;
    }
    return;
  }
  std::uint64_t offset = 0;
  for (int k = 1; k <= n; ++k) {
    enumerate_k(n, k, order, out + offset);
    offset += binomial(n, k);
  }
}

void rank_colex(const mask_t* masks, std::size_t m, std::uint64_t* out) noexcept {
  const auto& t = table();
  for (std::size_t i = 0; i < m; ++i) {
    mask_t x = masks[i];
    std::uint64_t r = 0;
    int idx = 1;
    while (x) {
      const int c = lowest_bit(x);
      r += (c >= idx) ? t.c[c][idx] : 0;
      x &= x - 1;
      ++idx;
    }
    out[i] = r;
  }
}

void unrank_colex(const std::uint64_t* ranks, std::size_t m, int n, int k, mask_t* out) {
  check_k(n, k);
  const auto& t = table();
  const std::uint64_t total = t.c[n][k];
  for (std::size_t i = 0; i < m; ++i) {
    std::uint64_t r = ranks[i];  // read once: the caller's buffer may change while we run
    if (r >= total)
      throw std::out_of_range("rank " + std::to_string(r) + " is not below C(" +
                              std::to_string(n) + ", " + std::to_string(k) + ") = " +
                              std::to_string(total));
    mask_t mask = 0;
    int c = n - 1;
    for (int j = k; j >= 1; --j) {
      // Largest c with C(c, j) <= r (C(c, j) = 0 for c < j, so this always stops at c >= j-1).
      while (c >= j && t.c[c][j] > r) --c;
      if (c < j) c = j - 1;  // then C(c, j) = 0
      mask |= mask_t{1} << c;
      r -= (c >= j) ? t.c[c][j] : 0;
      --c;
    }
    out[i] = mask;
  }
}

std::vector<mask_t> sample_distinct(int n, std::uint64_t m, const std::vector<int>& sizes_in,
                                    std::uint64_t seed) {
  check_n_tasks(n);
  std::vector<int> sizes = sizes_in;
  if (sizes.empty())
    for (int k = 1; k <= n; ++k) sizes.push_back(k);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  for (int k : sizes) check_k(n, k);
  // Index space: the concatenation of the k-subsets of each requested size.
  // distinct sizes in [1, n]: the total is at most 2^n - 1, so it fits in 64 bits
  std::vector<std::uint64_t> starts;
  std::uint64_t total = 0;
  for (int k : sizes) {
    starts.push_back(total);
    total += binomial(n, k);
  }
  if (m > total)
    throw std::invalid_argument("cannot sample " + std::to_string(m) + " distinct combinations: only " +
                                std::to_string(double(total)) + " exist for these sizes");
  SplitMix64 rng{seed};
  std::unordered_set<std::uint64_t> chosen;
  chosen.reserve(std::size_t(m) * 2 + 1);
  // Floyd: for j in [T-m, T): t ~ U[0, j]; take t unless already taken, else take j.
  // total - 1 fits in uint64 (total <= 2^64 - 1).
  const std::uint64_t t_minus_1 = total - 1;
  for (std::uint64_t step = 0; step < m; ++step) {
    const std::uint64_t j = t_minus_1 - (m - 1) + step;
    const std::uint64_t t = rng.below_inclusive(j);
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  std::vector<std::uint64_t> idx(chosen.begin(), chosen.end());
  std::sort(idx.begin(), idx.end());
  std::vector<mask_t> out(idx.size());
  std::size_t s = 0;
  for (std::size_t i = 0; i < idx.size(); ++i) {
    while (s + 1 < sizes.size() && idx[i] >= starts[s + 1]) ++s;
    const std::uint64_t r = idx[i] - starts[s];
    unrank_colex(&r, 1, n, sizes[s], &out[i]);
  }
  return out;
}

}  // namespace mtgfast
