// Portable bit operations on uint64: C++20 <bit> where available, MSVC intrinsics, else the
// GCC/Clang builtins. Every file in csrc/ counts bits through these two functions.
#pragma once
#include <cstdint>

#if defined(__has_include)
#if __has_include(<version>)
#include <version>
#endif
#endif

#if defined(__cpp_lib_bitops) && __cpp_lib_bitops >= 201907L
#include <bit>
#define MTGFAST_STD_BIT 1
#elif defined(_MSC_VER)
#include <intrin.h>
#endif

namespace mtgfast {

// Number of set bits of x.
inline int popcount64(std::uint64_t x) noexcept {
#if defined(MTGFAST_STD_BIT)
  return std::popcount(x);
#elif defined(_MSC_VER) && defined(_M_X64)
  return int(__popcnt64(x));
#elif defined(_MSC_VER)
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return int((x * 0x0101010101010101ULL) >> 56);
#else
  return __builtin_popcountll(x);
#endif
}

// Index of the lowest set bit of x; x must be non-zero.
inline int ctz64(std::uint64_t x) noexcept {
#if defined(MTGFAST_STD_BIT)
  return std::countr_zero(x);
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
  unsigned long idx;
  _BitScanForward64(&idx, x);
  return int(idx);
#elif defined(_MSC_VER)
  unsigned long idx;
  const unsigned long lo = static_cast<unsigned long>(x & 0xFFFFFFFFULL);
  if (_BitScanForward(&idx, lo)) return int(idx);
  _BitScanForward(&idx, static_cast<unsigned long>(x >> 32));
  return int(idx) + 32;
#else
  return __builtin_ctzll(x);
#endif
}

// Full 64 x 64 -> 128-bit product as (high, low) words, without a 128-bit integer type (MSVC has
// none): schoolbook on 32-bit halves, the same bits on every compiler.
inline std::uint64_t mul_hi_lo(std::uint64_t a, std::uint64_t b, std::uint64_t* lo) noexcept {
  const std::uint64_t a0 = a & 0xFFFFFFFFULL, a1 = a >> 32;
  const std::uint64_t b0 = b & 0xFFFFFFFFULL, b1 = b >> 32;
  const std::uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const std::uint64_t mid = (p00 >> 32) + (p01 & 0xFFFFFFFFULL) + (p10 & 0xFFFFFFFFULL);
  *lo = (mid << 32) | (p00 & 0xFFFFFFFFULL);
  return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

}  // namespace mtgfast
