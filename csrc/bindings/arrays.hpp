// Strict numpy arguments for the bound functions: what pybind11's forcecast would silently
// convert (1.7 -> 1, -1 -> 2^64 - 1, True -> 1, "3" -> error deep inside) is refused up front.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <climits>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace mtgfast_bind {

namespace py = pybind11;

using U64Array = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>;
using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

inline py::array as_array(const py::object& obj, const std::string& name) {
  if (obj.is_none()) throw py::type_error(name + " must be a numpy array, got None");
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(name + " must be a numpy array (or a sequence of numbers)");
  return a;
}

inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Non-negative integers as uint64 (masks, ranks): unsigned or signed integer dtypes only (an
// empty array of any numeric dtype is fine); negative values are refused.
inline U64Array u64_arg(const py::object& obj, const std::string& name) {
  py::array a = as_array(obj, name);
  const char kind = a.dtype().kind();
  if (a.size() == 0 && (kind == 'f' || kind == 'i' || kind == 'u')) return U64Array::ensure(a);
  if (kind != 'u' && kind != 'i')
    throw py::type_error(name + " must hold integers (uint64), got dtype " + dtype_name(a));
  if (kind == 'i') {
    const auto s = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    const std::int64_t* p = s.data();
    for (py::ssize_t i = 0; i < s.size(); ++i)
      if (p[i] < 0)
        throw py::value_error(name + " must be non-negative, got " + std::to_string(p[i]) +
                              " at flat index " + std::to_string(i));
  }
  return U64Array::ensure(a);
}

// Real numbers as float64: float, signed or unsigned integer dtypes (not bool, complex, object).
inline F64Array f64_arg(const py::object& obj, const std::string& name) {
  py::array a = as_array(obj, name);
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u')
    throw py::type_error(name + " must hold real numbers (float64), got dtype " + dtype_name(a));
  return F64Array::ensure(a);
}

// Scalars, as strictly as the arrays: pybind11 would take True as 1, None as False and 1 as True.
inline std::string type_name(const py::handle& o) {
  return py::str(py::type::handle_of(o).attr("__name__")).cast<std::string>();
}

inline bool is_bool(const py::handle& o) {
  return PyBool_Check(o.ptr()) || type_name(o) == "bool_" || type_name(o) == "bool";
}

// A Python or numpy integer (not a bool) in [lo, hi].
inline long long int_arg(const py::handle& o, const std::string& name, long long lo,
                         long long hi) {
  if (is_bool(o) || PyFloat_Check(o.ptr()) || !PyIndex_Check(o.ptr()))
    throw py::type_error(name + " must be an int, got " + type_name(o));
  const py::int_ v = py::reinterpret_steal<py::int_>(PyNumber_Index(o.ptr()));
  if (!v) throw py::error_already_set();
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow || x < lo || x > hi)  // as pybind11's own int conversion: a TypeError
    throw py::type_error(name + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                          "], got " + py::str(v).cast<std::string>());
  return x;
}

// A Python or numpy integer (not a bool) that fits a C int.
inline int int32_arg(const py::handle& o, const std::string& name) {
  return int(int_arg(o, name, INT_MIN, INT_MAX));
}

// A Python or numpy integer (not a bool) in [0, 2^64 - 1].
inline std::uint64_t u64_scalar(const py::handle& o, const std::string& name) {
  if (is_bool(o) || PyFloat_Check(o.ptr()) || !PyIndex_Check(o.ptr()))
    throw py::type_error(name + " must be an int, got " + type_name(o));
  const py::int_ v = py::reinterpret_steal<py::int_>(PyNumber_Index(o.ptr()));
  if (!v) throw py::error_already_set();
  const unsigned long long x = PyLong_AsUnsignedLongLong(v.ptr());
  if (x == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error(name + " must be in [0, 2^64 - 1], got " +
                          py::str(v).cast<std::string>());
  }
  return std::uint64_t(x);
}

// A real number: a Python or numpy int or float (not a bool, None, a string or a complex).
inline double real_arg(const py::handle& o, const std::string& name) {
  const bool number = PyFloat_Check(o.ptr()) || PyLong_Check(o.ptr()) ||
                      py::isinstance(o, py::module_::import("numpy").attr("floating")) ||
                      py::isinstance(o, py::module_::import("numpy").attr("integer"));
  if (is_bool(o) || !number) throw py::type_error(name + " must be a number, got " + type_name(o));
  return o.cast<double>();
}

// A switch: a Python or numpy bool only.
inline bool bool_arg(const py::handle& o, const std::string& name) {
  if (!is_bool(o)) throw py::type_error(name + " must be a bool, got " + type_name(o));
  return PyObject_IsTrue(o.ptr()) == 1;
}

// Physical memory in bytes (0 when unknown): a table larger than this would be killed by the
// operating system rather than fail with MemoryError, so such a request is refused first.
inline std::uint64_t physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return std::uint64_t(pages) * std::uint64_t(page);
#endif
  return 0;
}

// Refuses a result of `bytes` bytes that would not fit in half of this machine's memory: the OS
// would kill the process (overcommit) rather than fail the allocation. A MemoryError (as numpy's
// "Unable to allocate"), raised before allocating, naming the request (`what`) and the bytes.
inline void check_fits(double bytes, const std::string& what) {
  const std::uint64_t phys = physical_memory();
  if (phys && bytes > double(phys) / 2) {
    char text[160];
    std::snprintf(text, sizeof text, " needs about %.0f bytes (%.3g GiB), more than half of this "
                  "machine's memory (%.3g GiB)", bytes, bytes / 1073741824.0,
                  double(phys) / 1073741824.0);
    PyErr_SetString(PyExc_MemoryError, (what + text).c_str());
    throw py::error_already_set();
  }
}

}  // namespace mtgfast_bind
