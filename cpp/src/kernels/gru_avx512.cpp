// AVX-512 GRU / AUGRU step (gru.h): 16 hidden units per vector, masked tail; within a few ulp of
// gru_ref.cpp (Cephes exp in σ and tanh, vecmath_avx512.h; no FMA contraction).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -ffp-contract=off; only called
// after the runtime check (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must
// not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

void gru_gates(const float* gi, const float* gh, const float* att, int64_t rows, int64_t h,
               float* state) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < rows; ++i) {
    const float* a = gi + i * 3 * h;
    const float* b = gh + i * 3 * h;
    float* s = state + i * h;
    const __m512 av = _mm512_set1_ps(att ? att[i] : 0.0f);
    for (int64_t j = 0; j < h; j += 16) {
      const __mmask16 m = mask16(h - j);
      const __m512 r =
          vsigmoid(_mm512_add_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j)));
      const __m512 u = vsigmoid(
          _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + h + j), _mm512_maskz_loadu_ps(m, b + h + j)));
      const __m512 n = vtanh(_mm512_add_ps(_mm512_maskz_loadu_ps(m, a + 2 * h + j),
                                           _mm512_mul_ps(r, _mm512_maskz_loadu_ps(m, b + 2 * h + j))));
      const __m512 sv = _mm512_maskz_loadu_ps(m, s + j);
      __m512 y;
      if (att) {
        const __m512 ua = _mm512_mul_ps(av, u);
        y = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(one, ua), sv), _mm512_mul_ps(ua, n));
      } else {
        y = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(one, u), n), _mm512_mul_ps(u, sv));
      }
      _mm512_mask_storeu_ps(s + j, m, y);
    }
  }
}

}  // namespace dpn::kernels::avx512
