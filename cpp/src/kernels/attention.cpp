// Dispatch of attention_rows (attention.h) to the selected ISA's version.
#include "kernels/attention.h"

#include "cpu/cpu_features.h"

namespace dpn::kernels {

// Keys of one head transposed, padded to a multiple of 64 positions ([d, Lp] covers any head and
// the vector versions' key blocks), plus one query's scores.
int64_t attention_scratch_floats(int64_t L, int64_t d) {
  const int64_t Lp = (L + 63) / 64 * 64;
  return d * Lp + Lp;
}

void attention_rows(cpu::Isa isa, const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H,
                    float scale, float* A, int64_t lda, float* scratch) {
  if (L <= 0) return;
#if defined(DPN_HAVE_X86_KERNELS)
  switch (isa) {
    case cpu::Isa::Avx512: return attention_rows_avx512(qkv, ldq, L, d, H, scale, A, lda, scratch);
    case cpu::Isa::Avx2: return attention_rows_avx2(qkv, ldq, L, d, H, scale, A, lda, scratch);
    default: break;
  }
#else
  (void)isa;
#endif
  attention_rows_ref(qkv, ldq, L, d, H, scale, A, lda, scratch);
}

void attention_rows(const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H, float scale,
                    float* A, int64_t lda, float* scratch) {
  attention_rows(cpu::selected_isa(), qkv, ldq, L, d, H, scale, A, lda, scratch);
}

}  // namespace dpn::kernels
