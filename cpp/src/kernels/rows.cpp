// Dispatch of the row kernels (rows.h) to the selected ISA's version (rows_ref.cpp,
// rows_avx2.cpp, rows_avx512.cpp).
#include "kernels/rows.h"

#include "cpu/cpu_features.h"
#include "kernels/gemm_isa.h"

namespace dpn::kernels {

#if defined(DPN_HAVE_X86_KERNELS)
#define DPN_DISPATCH(isa, fn, ...)                              \
  switch (isa) {                                                \
    case cpu::Isa::Avx512: return fn##_avx512(__VA_ARGS__);     \
    case cpu::Isa::Avx2: return fn##_avx2(__VA_ARGS__);         \
    default: return fn##_ref(__VA_ARGS__);                      \
  }
#else
#define DPN_DISPATCH(isa, fn, ...) return fn##_ref(__VA_ARGS__);
#endif

void pool_rows(cpu::Isa isa, const float* table, int64_t dim, const int64_t* rows, int64_t n,
               float scale, float* out) {
  DPN_DISPATCH(isa, pool_rows, table, dim, rows, n, scale, out)
}

void layernorm_rows(cpu::Isa isa, const float* x, int64_t rows, int64_t d, const float* w,
                    const float* b, float eps, float* y) {
  DPN_DISPATCH(isa, layernorm_rows, x, rows, d, w, b, eps, y)
}

void cross_rows(cpu::Isa isa, const float* x0, const float* xl, int64_t rows, int64_t d,
                const float* w, const float* b, float* y) {
  DPN_DISPATCH(isa, cross_rows, x0, xl, rows, d, w, b, y)
}

#undef DPN_DISPATCH

void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
               float* out) {
  pool_rows(cpu::selected_isa(), table, dim, rows, n, scale, out);
}

void layernorm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b,
                    float eps, float* y) {
  layernorm_rows(cpu::selected_isa(), x, rows, d, w, b, eps, y);
}

void cross_rows(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y) {
  cross_rows(cpu::selected_isa(), x0, xl, rows, d, w, b, y);
}

}  // namespace dpn::kernels
