// mtgfast._core: the only translation units that include pybind11. One register_<area> per file.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_masks(py::module_& m);
void register_search(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "mtgfast compiled core: combination enumeration and grouping search (C++17).";
  auto masks = m.def_submodule("masks", "Enumeration, ranking and sampling of uint64 task masks.");
  register_masks(masks);
  auto search = m.def_submodule("search", "Grouping search: partition DP, branch-and-bound, beam.");
  register_search(search);
}
