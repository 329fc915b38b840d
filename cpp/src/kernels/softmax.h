// Row-wise softmax (softmax gates of the dynamic layers), shared by the ops
// (softmax_ref.cpp, softmax_avx2.cpp, softmax_avx512.cpp).
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// Runs with the process's kernel ISA (cpu::selected_isa()); the overload taking an Isa runs that
// ISA's version (it must be cpu::available()). The vector versions match the reference to a few
// ulp (Cephes exp, vecmath_*.h).

// Row-wise softmax over `cols` (>= 1) columns of a [rows, ld] matrix. A row holding a NaN or +inf
// becomes all NaN (every version).
void softmax_rows(float* x, int64_t rows, int64_t cols, int64_t ld);
void softmax_rows(cpu::Isa isa, float* x, int64_t rows, int64_t cols, int64_t ld);

}  // namespace dpn::kernels
