// AVX-512 KFAtt loops (kfatt.h): a key's dot product 16 channels at a time (masked tail, one lane
// sum per key); the weighted sum keeps up to 64 channels of the accumulator in registers over all
// n rows. Compiled with -mavx512f -mfma...; only called after the runtime check
// (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

void kfatt_scores(const float* q, const float* K, int64_t ldk, int64_t n, int64_t dh, float scale,
                  float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* k = K + t * ldk;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t e = 0; e < dh; e += 16) {
      const __mmask16 m = mask16(dh - e);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + e), _mm512_maskz_loadu_ps(m, k + e), acc);
    }
    out[t] = tree_sum16(acc) * scale;  // the avx2 version's lane order: the same bits
  }
}

void kfatt_wsum(const float* w, const float* V, int64_t ldv, int64_t n, int64_t dh, float* acc) {
  for (int64_t e0 = 0; e0 < dh; e0 += 64) {
    __m512 a[4];
    __mmask16 m[4];
    for (int j = 0; j < 4; ++j) {
      m[j] = mask16(dh - e0 - 16 * j);
      a[j] = _mm512_maskz_loadu_ps(m[j], acc + e0 + 16 * j);
    }
    for (int64_t t = 0; t < n; ++t) {
      const __m512 wt = _mm512_set1_ps(w[t]);
      const float* v = V + t * ldv + e0;
      for (int j = 0; j < 4; ++j)
        if (m[j]) a[j] = _mm512_fmadd_ps(wt, _mm512_maskz_loadu_ps(m[j], v + 16 * j), a[j]);
    }
    for (int j = 0; j < 4; ++j) _mm512_mask_storeu_ps(acc + e0 + 16 * j, m[j], a[j]);
  }
}

}  // namespace dpn::kernels::avx512
