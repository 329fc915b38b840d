// Dispatch of act_inplace / softmax_rows (act.h) to the selected ISA's version (rows_ref.cpp,
// rows_avx2.cpp, rows_avx512.cpp).
#include "kernels/act.h"

#include "cpu/cpu_features.h"
#include "kernels/gemm_isa.h"

namespace dpn::kernels {

void act_inplace(cpu::Isa isa, float* x, int64_t n, Act a) {
  if (a == Act::Identity || n <= 0) return;
  switch (isa) {
#if defined(DPN_HAVE_X86_KERNELS)
    case cpu::Isa::Avx512: return act_inplace_avx512(x, n, a);
    case cpu::Isa::Avx2: return act_inplace_avx2(x, n, a);
#endif
    default: return act_inplace_ref(x, n, a);
  }
}

void softmax_rows(cpu::Isa isa, float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (rows <= 0 || cols <= 0) return;
  switch (isa) {
#if defined(DPN_HAVE_X86_KERNELS)
    case cpu::Isa::Avx512: return softmax_rows_avx512(x, rows, cols, ld);
    case cpu::Isa::Avx2: return softmax_rows_avx2(x, rows, cols, ld);
#endif
    default: return softmax_rows_ref(x, rows, cols, ld);
  }
}

void act_inplace(float* x, int64_t n, Act a) { act_inplace(cpu::selected_isa(), x, n, a); }

void softmax_rows(float* x, int64_t rows, int64_t cols, int64_t ld) {
  softmax_rows(cpu::selected_isa(), x, rows, cols, ld);
}

}  // namespace dpn::kernels
