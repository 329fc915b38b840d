#include <pybind11/pybind11.h>
int dpn_placeholder();
PYBIND11_MODULE(_engine, m) { m.def("placeholder", &dpn_placeholder); }
