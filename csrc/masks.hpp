// Combinations of N <= 64 tasks as uint64 bitmasks (bit j = task j). Header-only helpers.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bits.hpp"

namespace mtgfast {

using mask_t = std::uint64_t;

inline int popcount(mask_t m) noexcept { return popcount64(m); }
inline int lowest_bit(mask_t m) noexcept { return ctz64(m); }

// All-ones mask of the first n tasks; n in [0, 64].
inline mask_t full_mask(int n) noexcept { return n >= 64 ? ~mask_t{0} : ((mask_t{1} << n) - 1); }

// Next k-subset in increasing numeric (colex) order (Gosper's hack). Undefined for m == 0.
inline mask_t gosper_next(mask_t m) noexcept {
  const mask_t c = m & (~m + 1);
  const mask_t r = m + c;
  return (((r ^ m) >> 2) / c) | r;
}

// Reverse the lowest n bits of m (bit j <-> bit n-1-j).
inline mask_t bit_reverse(mask_t v, int n) noexcept {
  v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
  v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
  v = ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
  v = ((v >> 8) & 0x00FF00FF00FF00FFULL) | ((v & 0x00FF00FF00FF00FFULL) << 8);
  v = ((v >> 16) & 0x0000FFFF0000FFFFULL) | ((v & 0x0000FFFF0000FFFFULL) << 16);
  v = (v >> 32) | (v << 32);
  return n >= 64 ? v : (v >> (64 - n));
}

inline void check_n_tasks(int n) {
  if (n < 1 || n > 64)
    throw std::invalid_argument("n_tasks must be in [1, 64], got " + std::to_string(n));
}

}  // namespace mtgfast
