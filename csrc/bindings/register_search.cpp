// mtgfast._core.search: grouping search on numpy buffers (masks uint64 (M,), gains float64 (M, N)).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "deadline.hpp"
#include "exact.hpp"
#include "local_search.hpp"
#include "objective.hpp"
#include "search.hpp"

namespace py = pybind11;
using mtgfast::mask_t;

namespace {

using MaskArray = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>;
using GainArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

}  // namespace

void register_search(py::module_& m) {
  py::enum_<mtgfast::Method>(m, "Method", "Which search produced a result.")
      .value("dp", mtgfast::Method::DP, "partition DP over task subsets (exact)")
      .value("bnb", mtgfast::Method::BranchBound,
             "branch-and-bound with Lagrangian bounds, warm-started by beam + local search")
      .value("beam", mtgfast::Method::Beam, "beam search (+ local search) with a Lagrangian bound");
  py::enum_<mtgfast::Uncovered>(m, "Uncovered", "What a task that no chosen group contains costs.")
      .value("singleton", mtgfast::Uncovered::Singleton, "its singleton, one unit of budget")
      .value("alone", mtgfast::Uncovered::Alone, "nothing: trained alone at gain 0");

  py::class_<mtgfast::GroupingResult>(m, "GroupingResult",
                                      "One budget's answer: a grouping, its value and a bound.")
      .def_readonly("budget", &mtgfast::GroupingResult::budget)
      .def_readonly("feasible", &mtgfast::GroupingResult::feasible,
                    "a grouping was found (False: none exists when optimal, else none found)")
      .def_readonly("optimal", &mtgfast::GroupingResult::optimal,
                    "bound - value <= gap_tol * max(1, |value|)")
      .def_readonly("timed_out", &mtgfast::GroupingResult::timed_out)
      .def_readonly("method", &mtgfast::GroupingResult::method)
      .def_readonly("bound", &mtgfast::GroupingResult::bound,
                    "upper bound of the optimum for this budget")
      .def_readonly("value", &mtgfast::GroupingResult::value)
      .def_readonly("nodes", &mtgfast::GroupingResult::nodes)
      .def_property_readonly("gap",
                             [](const mtgfast::GroupingResult& g) {
                               return g.feasible ? g.bound - g.value
                                                 : std::numeric_limits<double>::infinity();
                             },
                             "bound - value (inf when no grouping was found)")
      .def_property_readonly("groups",
                             [](const mtgfast::GroupingResult& g) { return to_array(g.groups); })
      .def_property_readonly(
          "assignment", [](const mtgfast::GroupingResult& g) { return to_array(g.assignment); })
      .def_property_readonly(
          "task_gains", [](const mtgfast::GroupingResult& g) { return to_array(g.task_gains); })
      .def("__repr__", [](const mtgfast::GroupingResult& g) {
        return "GroupingResult(budget=" + std::to_string(g.budget) +
               ", feasible=" + (g.feasible ? "True" : "False") + ", value=" +
               std::to_string(g.value) + ", bound=" + std::to_string(g.bound) + ")";
      });

  m.def(
      "group",
      [](const py::object& masks_obj, const py::object& gains_obj, const py::object& budgets_obj,
         mtgfast::Method method, const py::object& width_obj, mtgfast::Uncovered mode,
         const py::object& limit_obj, const py::object& dp_bytes_obj, const py::object& gap_obj,
         const py::object& ls_obj) {
        if (py::isinstance<py::str>(budgets_obj) || !py::isinstance<py::sequence>(budgets_obj))
          throw py::type_error("budgets must be a sequence of ints, got " +
                               mtgfast_bind::type_name(budgets_obj));
        std::vector<int> budgets;
        for (const py::handle b : budgets_obj)
          budgets.push_back(mtgfast_bind::int32_arg(b, "budget"));
        const int beam_width = mtgfast_bind::int32_arg(width_obj, "beam_width");
        const double time_limit = mtgfast_bind::real_arg(limit_obj, "time_limit");
        const std::uint64_t max_dp_bytes = mtgfast_bind::u64_scalar(dp_bytes_obj, "max_dp_bytes");
        const double gap_tol = mtgfast_bind::real_arg(gap_obj, "gap_tol");
        const bool local_search = mtgfast_bind::bool_arg(ls_obj, "local_search");
        const MaskArray masks = mtgfast_bind::u64_arg(masks_obj, "masks");
        const GainArray gains = mtgfast_bind::f64_arg(gains_obj, "gains");
        if (masks.ndim() != 1) throw std::invalid_argument("masks must be 1-D");
        if (gains.ndim() != 2) throw std::invalid_argument("gains must be 2-D (n_masks, n_tasks)");
        if (gains.shape(0) != masks.shape(0))
          throw std::invalid_argument("gains has " + std::to_string(gains.shape(0)) +
                                      " rows for " + std::to_string(masks.shape(0)) + " masks");
        if (gains.shape(1) < 1 || gains.shape(1) > 64)
          throw std::invalid_argument("n_tasks must be in [1, 64], got " +
                                      std::to_string(gains.shape(1)));
        if (budgets.empty()) throw std::invalid_argument("no budget given");
        for (int b : budgets)
          if (b < 1) throw std::invalid_argument("budget must be >= 1, got " + std::to_string(b));
        if (beam_width < 1) throw std::invalid_argument("beam_width must be >= 1");
        if (!(time_limit >= 0.0)) throw std::invalid_argument("time_limit must be >= 0 (0: none)");
        if (!(gap_tol >= 0.0) || !std::isfinite(gap_tol))
          throw std::invalid_argument("gap_tol must be a finite number >= 0");
        const int n = static_cast<int>(gains.shape(1));
        const auto count = static_cast<std::size_t>(masks.shape(0));
        const mask_t* mp = masks.data();
        const double* gp = gains.data();
        mtgfast::SearchOptions opt;
        opt.beam_width = beam_width;
        opt.time_limit = time_limit;
        // never a DP table the machine cannot hold: the OS would kill the process, not throw
        const std::uint64_t phys = mtgfast_bind::physical_memory();
        opt.max_dp_bytes = phys ? std::min(max_dp_bytes, phys / 2) : max_dp_bytes;
        opt.gap_tol = gap_tol;
        opt.local_search = local_search;
        std::vector<mtgfast::GroupingResult> results;
        {
          py::gil_scoped_release release;
          const mtgfast::Deadline call(time_limit);  // the limit covers building the problem too
          const mtgfast::Problem p = mtgfast::make_problem(mp, gp, count, n, mode);
          if (call.has()) opt.time_limit = std::max(call.left(), 1e-9);
          results = mtgfast::search(p, budgets, method, opt);
        }
        return results;
      },
      py::arg("masks"), py::arg("gains"), py::arg("budgets"), py::arg("method"),
      py::arg("beam_width"), py::arg("uncovered"), py::arg("time_limit"), py::arg("max_dp_bytes"),
      py::arg("gap_tol") = py::float_(1e-6), py::arg("local_search") = py::bool_(true),
      "Grouping search; one GroupingResult per budget, in order. Gains outside each mask are "
      "ignored; time_limit (seconds, 0: none) covers the whole call.");

  m.def(
      "local_search",
      [](const py::object& masks_obj, const py::object& gains_obj, const py::object& start_obj,
         const py::object& budget_obj, mtgfast::Uncovered mode, const py::object& rounds_obj,
         const py::object& merge_obj, const py::object& seed_obj, const py::object& scan_obj) {
        const int budget = mtgfast_bind::int32_arg(budget_obj, "budget");
        const int max_rounds =
            mtgfast_bind::int32_arg(rounds_obj, "max_rounds");
        const bool merge = mtgfast_bind::bool_arg(merge_obj, "merge");
        const std::uint64_t kick_seed = mtgfast_bind::u64_scalar(seed_obj, "kick_seed");
        const bool scan = mtgfast_bind::bool_arg(scan_obj, "scan");
        const MaskArray masks = mtgfast_bind::u64_arg(masks_obj, "masks");
        const GainArray gains = mtgfast_bind::f64_arg(gains_obj, "gains");
        const MaskArray start = mtgfast_bind::u64_arg(start_obj, "start");
        if (masks.ndim() != 1) throw std::invalid_argument("masks must be 1-D");
        if (start.ndim() != 1) throw std::invalid_argument("start must be 1-D");
        if (gains.ndim() != 2 || gains.shape(0) != masks.shape(0))
          throw std::invalid_argument("gains must be 2-D with one row per mask");
        if (gains.shape(1) < 1 || gains.shape(1) > 64)
          throw std::invalid_argument("n_tasks must be in [1, 64], got " +
                                      std::to_string(gains.shape(1)));
        if (budget < 1) throw std::invalid_argument("budget must be >= 1");
        if (max_rounds < 0) throw std::invalid_argument("max_rounds must be >= 0");
        std::vector<mask_t> out;
        {
          py::gil_scoped_release release;
          const mtgfast::Problem p =
              mtgfast::make_problem(masks.data(), gains.data(), std::size_t(masks.shape(0)),
                                    int(gains.shape(1)), mode);
          std::vector<std::uint32_t> rows;
          for (py::ssize_t i = 0; i < start.shape(0); ++i) {
            const auto it = std::lower_bound(p.masks.begin(), p.masks.end(), start.data()[i]);
            if (it == p.masks.end() || *it != start.data()[i])
              throw std::invalid_argument("start mask " + std::to_string(start.data()[i]) +
                                          " is not a candidate");
            rows.push_back(std::uint32_t(it - p.masks.begin()));
          }
          std::vector<std::uint32_t> sorted_rows = rows;
          std::sort(sorted_rows.begin(), sorted_rows.end());
          if (std::adjacent_find(sorted_rows.begin(), sorted_rows.end()) != sorted_rows.end())
            throw std::invalid_argument("start masks must be distinct");
          if (rows.size() > std::size_t(budget))
            throw std::invalid_argument("start has " + std::to_string(rows.size()) +
                                        " groups, more than the budget " + std::to_string(budget));
          const std::vector<std::uint32_t> res =
              scan ? mtgfast::local_search_scan(p, rows, budget, max_rounds, merge, kick_seed)
                   : mtgfast::local_search(p, rows, budget, max_rounds, merge, kick_seed);
          for (std::uint32_t r : res) out.push_back(p.masks[r]);
        }
        return to_array(out);
      },
      py::arg("masks"), py::arg("gains"), py::arg("start"), py::arg("budget"),
      py::arg("uncovered"), py::arg("max_rounds") = py::int_(200), py::arg("merge") = py::bool_(true),
      py::arg("kick_seed") = py::int_(0), py::arg("scan") = py::bool_(false),
      "Local search from the groups `start` (masks of candidates), as the searches run it: the "
      "chosen masks in the order the routine holds them. scan=True runs the former routine "
      "that scans every candidate per move (the reference; same result). For tests.");

  m.def(
      "dp_bytes",
      [](const py::object& n_obj, const py::object& budget_obj) {
        const int n_tasks = mtgfast_bind::int32_arg(n_obj, "n_tasks");
        const int max_budget = mtgfast_bind::int32_arg(budget_obj, "max_budget");
        if (max_budget < 1)
          throw std::invalid_argument("max_budget must be >= 1, got " + std::to_string(max_budget));
        return mtgfast::dp_bytes(n_tasks, max_budget);
      },
      py::arg("n_tasks"), py::arg("max_budget"),
      "Bytes the partition DP needs (2^64 - 1 for n_tasks outside [1, 40]); max_budget >= 1.");
}
