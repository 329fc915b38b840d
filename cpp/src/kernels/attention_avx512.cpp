// AVX-512 attention core (attention.h): scores for 16 keys at a time from keys transposed per head,
// vector exp (vecmath_avx512.h), values accumulated 16 channels at a time; masked tails.
// Compiled with -mavx512f -mfma...; only called after the runtime check (cpu::available(Isa::Avx512)).
#include <immintrin.h>

#include "kernels/attention.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels {

void attention_rows_avx512(const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H,
                           float scale, float* A, int64_t lda, float* scratch) {
  const int64_t dh = d / H, Lp = (L + 15) / 16 * 16;
  float* Kt = scratch;      // [dh, Lp]
  float* s = scratch + dh * Lp;  // [Lp]
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t j = 0; j < L; ++j)
      for (int64_t e = 0; e < dh; ++e) Kt[e * Lp + j] = qkv[j * ldq + d + h * dh + e];
    for (int64_t i = 0; i < L; ++i) {
      const float* q = qkv + i * ldq + h * dh;
      __m512 mx = ninf;
      for (int64_t j = 0; j < L; j += 16) {
        const __mmask16 m = mask16(L - j);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t e = 0; e < dh; ++e)
          acc = _mm512_fmadd_ps(_mm512_set1_ps(q[e]), _mm512_maskz_loadu_ps(m, Kt + e * Lp + j), acc);
        acc = _mm512_mul_ps(acc, _mm512_set1_ps(scale));
        _mm512_mask_storeu_ps(s + j, m, acc);
        mx = _mm512_mask_max_ps(mx, m, mx, acc);
      }
      const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < L; j += 16) {
        const __mmask16 m = mask16(L - j);
        const __m512 ex = _mm512_maskz_mov_ps(m, exp_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), vmx)));
        _mm512_mask_storeu_ps(s + j, m, ex);
        sum = _mm512_add_ps(sum, ex);
      }
      const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
      float* a = A + i * lda + h * dh;
      for (int64_t e = 0; e < dh; e += 16) {
        const __mmask16 m = mask16(dh - e);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < L; ++j)
          acc = _mm512_fmadd_ps(_mm512_set1_ps(s[j]),
                                _mm512_maskz_loadu_ps(m, qkv + j * ldq + 2 * d + h * dh + e), acc);
        _mm512_mask_storeu_ps(a + e, m, _mm512_mul_ps(acc, inv));
      }
    }
  }
}

}  // namespace dpn::kernels
