#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <string>

#include "arrays.hpp"
#include "enumerate.hpp"

namespace py = pybind11;
using mtgfast::mask_t;

namespace {

using MaskArray = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>;

mtgfast::Order parse_order(const std::string& s) {
  if (s == "lex") return mtgfast::Order::Lex;
  if (s == "colex") return mtgfast::Order::Colex;
  if (s == "binary") return mtgfast::Order::Binary;
  throw std::invalid_argument("order must be 'lex', 'colex' or 'binary', got '" + s + "'");
}

}  // namespace

void register_masks(py::module_& m) {
  m.def(
      "binomial",
      [](const py::object& n_obj, const py::object& k_obj) {
        const int n = mtgfast_bind::int32_arg(n_obj, "n");
        const int k = mtgfast_bind::int32_arg(k_obj, "k");
        if (n < 0 || n > 64)  // C(n, k) for n > 64 may not fit in 64 bits: no silent 0
          throw std::invalid_argument("binomial: n must be in [0, 64], got " + std::to_string(n));
        return mtgfast::binomial(n, k);
      },
      py::arg("n"), py::arg("k"), "C(n, k) for 0 <= n <= 64 (0 when k is outside [0, n]).");

  m.def(
      "enumerate_all",
      [](const py::object& n_obj, const std::string& order, const py::object& max_bytes_obj) {
        const int n = mtgfast_bind::int32_arg(n_obj, "n");
        const std::uint64_t max_bytes = mtgfast_bind::u64_scalar(max_bytes_obj, "max_bytes");
        const auto ord = parse_order(order);
        const std::uint64_t count = mtgfast::count_all_checked(n, max_bytes);
        mtgfast_bind::check_fits(double(count) * 8.0, "enumerate_all(" + std::to_string(n) + ")");
        MaskArray out(static_cast<py::ssize_t>(count));
        mask_t* ptr = out.mutable_data();
        {
          py::gil_scoped_release release;
          mtgfast::enumerate_all(n, ord, ptr);
        }
        return out;
      },
      py::arg("n"), py::arg("order"), py::arg("max_bytes"),
      "All 2^n - 1 non-empty subsets as uint64 masks.");

  m.def(
      "enumerate_k",
      [](const py::object& n_obj, const py::object& k_obj, const std::string& order) {
        const int n = mtgfast_bind::int32_arg(n_obj, "n");
        const int k = mtgfast_bind::int32_arg(k_obj, "k");
        const auto ord = parse_order(order);
        mtgfast::check_n_tasks(n);
        if (k < 1 || k > n) throw std::invalid_argument("k must be in [1, n]");
        mtgfast_bind::check_fits(double(mtgfast::binomial(n, k)) * 8.0,
                                 "enumerate_k(" + std::to_string(n) + ", " + std::to_string(k) + ")");
        MaskArray out(static_cast<py::ssize_t>(mtgfast::binomial(n, k)));
        mask_t* ptr = out.mutable_data();
        {
          py::gil_scoped_release release;
          mtgfast::enumerate_k(n, k, ord, ptr);
        }
        return out;
      },
      py::arg("n"), py::arg("k"), py::arg("order"), "All C(n, k) k-subsets as uint64 masks.");

  m.def(
      "rank_colex",
      [](const py::object& obj) {
        const MaskArray masks = mtgfast_bind::u64_arg(obj, "masks");
        if (masks.ndim() != 1) throw std::invalid_argument("masks must be 1-D");
        for (py::ssize_t i = 0; i < masks.size(); ++i)
          if (masks.data()[i] == 0)
            throw std::invalid_argument("masks contains the empty combination (mask 0) at index " +
                                        std::to_string(i));
        py::array_t<std::uint64_t> out(masks.size());
        const mask_t* in = masks.data();
        std::uint64_t* o = out.mutable_data();
        const auto n = static_cast<std::size_t>(masks.size());
        {
          py::gil_scoped_release release;
          mtgfast::rank_colex(in, n, o);
        }
        return out;
      },
      py::arg("masks"), "Colex rank of each mask among the subsets of its size.");

  m.def(
      "unrank_colex",
      [](const py::object& obj, const py::object& n_obj, const py::object& k_obj) {
        const int n = mtgfast_bind::int32_arg(n_obj, "n");
        const int k = mtgfast_bind::int32_arg(k_obj, "k");
        const MaskArray ranks = mtgfast_bind::u64_arg(obj, "ranks");
        if (ranks.ndim() != 1) throw std::invalid_argument("ranks must be 1-D");
        MaskArray out(ranks.size());
        const std::uint64_t* in = ranks.data();
        mask_t* o = out.mutable_data();
        const auto cnt = static_cast<std::size_t>(ranks.size());
        {
          py::gil_scoped_release release;
          mtgfast::unrank_colex(in, cnt, n, k, o);
        }
        return out;
      },
      py::arg("ranks"), py::arg("n"), py::arg("k"), "k-subsets with the given colex ranks.");

  m.def(
      "sample_distinct",
      [](const py::object& n_obj, const py::object& count_obj, const py::object& sizes_obj,
         const py::object& seed_obj) {
        const int n = mtgfast_bind::int32_arg(n_obj, "n");
        const std::uint64_t count = mtgfast_bind::u64_scalar(count_obj, "count");
        if (py::isinstance<py::str>(sizes_obj) || !py::isinstance<py::sequence>(sizes_obj))
          throw py::type_error("sizes must be a sequence of ints, got " +
                               mtgfast_bind::type_name(sizes_obj));
        std::vector<int> sizes;
        for (const py::handle k : sizes_obj)
          sizes.push_back(mtgfast_bind::int32_arg(k, "size"));
        const std::uint64_t seed = mtgfast_bind::u64_scalar(seed_obj, "seed");
        // the sampler's peak: a hash set of the drawn indices (2 buckets and a node of 32 bytes
        // each), then the sorted indices and the masks (as masks.SAMPLE_BYTES_PER_MASK)
        mtgfast_bind::check_fits(double(count) * 72.0,
                                 "sample_distinct of " + std::to_string(count) + " combinations");
        std::vector<mask_t> v;
        {
          py::gil_scoped_release release;
          v = mtgfast::sample_distinct(n, count, sizes, seed);
        }
        MaskArray out(static_cast<py::ssize_t>(v.size()));
        std::copy(v.begin(), v.end(), out.mutable_data());
        return out;
      },
      py::arg("n"), py::arg("count"), py::arg("sizes"), py::arg("seed"),
      "count distinct uniform random non-empty subsets (optionally of given sizes), sorted.");

  m.def(
      "popcount",
      [](const py::object& obj) {
        const MaskArray masks = mtgfast_bind::u64_arg(obj, "masks");
        if (masks.ndim() != 1) throw std::invalid_argument("masks must be 1-D");
        py::array_t<std::int32_t> out(masks.size());
        const mask_t* in = masks.data();
        std::int32_t* o = out.mutable_data();
        const auto cnt = static_cast<std::size_t>(masks.size());
        {
          py::gil_scoped_release release;
          for (std::size_t i = 0; i < cnt; ++i) o[i] = mtgfast::popcount(in[i]);
        }
        return out;
      },
      py::arg("masks"), "Number of tasks in each mask.");
}
