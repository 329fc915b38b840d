// Dispatch of kron_panel (kron.h) to the selected ISA's version (rows_ref.cpp, rows_avx2.cpp,
// rows_avx512.cpp).
#include "kernels/kron.h"

#include "cpu/cpu_features.h"
#include "kernels/gemm_isa.h"

namespace dpn::kernels {

void kron_panel(cpu::Isa isa, const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,
                int64_t l, int64_t rows, bool with_h, float* P, int64_t ldp) {
  switch (isa) {
#if defined(DPN_HAVE_X86_KERNELS)
    case cpu::Isa::Avx512: return kron_panel_avx512(x, ldx, m, h, ldh, l, rows, with_h, P, ldp);
    case cpu::Isa::Avx2: return kron_panel_avx2(x, ldx, m, h, ldh, l, rows, with_h, P, ldp);
#endif
    default: return kron_panel_ref(x, ldx, m, h, ldh, l, rows, with_h, P, ldp);
  }
}

void kron_panel(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                int64_t rows, bool with_h, float* P, int64_t ldp) {
  kron_panel(cpu::selected_isa(), x, ldx, m, h, ldh, l, rows, with_h, P, ldp);
}

}  // namespace dpn::kernels
