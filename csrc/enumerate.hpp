// Enumeration, ranking and sampling of task combinations (pure C++17, no Python).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "masks.hpp"

namespace mtgfast {

enum class Order {
  Lex,     // by size, then itertools.combinations order of task indices (MTG-Net release files)
  Colex,   // by size, then increasing numeric value (Gosper order, combinatorial number system)
  Binary,  // 1, 2, ..., 2^n - 1
};

// Binomial coefficient C(n, k) for n <= 64 (exact; C(64, 32) < 2^64).
std::uint64_t binomial(int n, int k) noexcept;

// Number of masks that enumerate_all(n) returns: 2^n - 1. Throws std::length_error when that many
// masks would take more than max_bytes.
std::uint64_t count_all_checked(int n, std::uint64_t max_bytes);

// Writes all 2^n - 1 non-empty subsets of n tasks into out (size 2^n - 1) in the given order.
void enumerate_all(int n, Order order, mask_t* out);

// Writes all C(n, k) k-subsets into out, in Lex or Colex order (Binary is Colex for one size).
void enumerate_k(int n, int k, Order order, mask_t* out);

// Rank of each mask among the subsets of its own size, in colex order:
// rank = sum_i C(c_i, i + 1) where c_0 < c_1 < ... are the set bits.
void rank_colex(const mask_t* masks, std::size_t m, std::uint64_t* out) noexcept;

// Inverse of rank_colex for k-subsets: out[i] = the k-subset whose colex rank is ranks[i].
// Throws std::out_of_range if a rank >= C(n, k).
void unrank_colex(const std::uint64_t* ranks, std::size_t m, int n, int k, mask_t* out);

// m distinct non-empty subsets of n tasks drawn uniformly (Floyd's algorithm over the index space),
// restricted to the sizes in `sizes` when it is non-empty. Output sorted by (size, colex rank).
// Throws std::invalid_argument if m exceeds the number of such subsets.
std::vector<mask_t> sample_distinct(int n, std::uint64_t m, const std::vector<int>& sizes,
                                    std::uint64_t seed);

}  // namespace mtgfast
