// mtgfast._core.search: grouping search on numpy buffers (masks uint64 (M,), gains float64 (M, N)).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "beam.hpp"
#include "exact.hpp"
#include "objective.hpp"

namespace py = pybind11;
using mtgfast::mask_t;

namespace {

using MaskArray = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>;
using GainArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

mtgfast::Uncovered parse_uncovered(const std::string& s) {
  if (s == "singleton") return mtgfast::Uncovered::Singleton;
  if (s == "alone") return mtgfast::Uncovered::Alone;
  throw std::invalid_argument("uncovered must be 'singleton' or 'alone', got '" + s + "'");
}

py::tuple to_python(const mtgfast::GroupingResult& g) {
  MaskArray groups(static_cast<py::ssize_t>(g.groups.size()));
  std::copy(g.groups.begin(), g.groups.end(), groups.mutable_data());
  py::array_t<std::int64_t> assignment(static_cast<py::ssize_t>(g.assignment.size()));
  std::copy(g.assignment.begin(), g.assignment.end(), assignment.mutable_data());
  py::array_t<double> task_gains(static_cast<py::ssize_t>(g.task_gains.size()));
  std::copy(g.task_gains.begin(), g.task_gains.end(), task_gains.mutable_data());
  return py::make_tuple(g.budget, g.feasible, g.optimal, groups, assignment, task_gains, g.value);
}

}  // namespace

void register_search(py::module_& m) {
  m.def(
      "group",
      [](const MaskArray& masks, const GainArray& gains, const std::vector<int>& budgets,
         const std::string& method, int beam_width, const std::string& uncovered,
         double time_limit, std::uint64_t max_dp_bytes) {
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
        if (method != "dp" && method != "bnb" && method != "beam")
          throw std::invalid_argument("method must be 'dp', 'bnb' or 'beam', got '" + method + "'");
        if (!(time_limit >= 0.0)) throw std::invalid_argument("time_limit must be >= 0 (0: none)");
        const auto mode = parse_uncovered(uncovered);
        const int n = static_cast<int>(gains.shape(1));
        const auto count = static_cast<std::size_t>(masks.shape(0));
        const mask_t* mp = masks.data();
        const double* gp = gains.data();
        std::vector<mtgfast::GroupingResult> results;
        {
          py::gil_scoped_release release;
          const mtgfast::Problem p = mtgfast::make_problem(mp, gp, count, n, mode);
          if (method == "dp")
            results = mtgfast::exact_dp(p, budgets, max_dp_bytes);
          else if (method == "bnb")
            results = mtgfast::exact_bnb(p, budgets, time_limit, beam_width);
          else
            results = mtgfast::beam_search(p, budgets, beam_width);
        }
        py::list out;
        for (const auto& g : results) out.append(to_python(g));
        return out;
      },
      py::arg("masks"), py::arg("gains"), py::arg("budgets"), py::arg("method"),
      py::arg("beam_width"), py::arg("uncovered"), py::arg("time_limit"), py::arg("max_dp_bytes"),
      "Grouping search; one (budget, feasible, optimal, groups, assignment, task_gains, value) "
      "tuple per budget. Gains outside each mask are ignored.");

  m.def("dp_bytes", &mtgfast::dp_bytes, py::arg("n_tasks"), py::arg("max_budget"),
        "Bytes the partition DP needs.");
}
