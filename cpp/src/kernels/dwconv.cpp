// Dispatch of dwconv_rows (dwconv.h) to the selected ISA's version.
#include "kernels/dwconv.h"

#include "cpu/cpu_features.h"

namespace dpn::kernels {

void dwconv_rows(cpu::Isa isa, const float* x, int64_t L, int64_t n, const float* K, int64_t k,
                 float* y) {
#if defined(DPN_HAVE_X86_KERNELS)
  switch (isa) {
    case cpu::Isa::Avx512: return dwconv_rows_avx512(x, L, n, K, k, y);
    case cpu::Isa::Avx2: return dwconv_rows_avx2(x, L, n, K, k, y);
    default: break;
  }
#else
  (void)isa;
#endif
  dwconv_rows_ref(x, L, n, K, k, y);
}

void dwconv_rows(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  dwconv_rows(cpu::selected_isa(), x, L, n, K, k, y);
}

}  // namespace dpn::kernels
