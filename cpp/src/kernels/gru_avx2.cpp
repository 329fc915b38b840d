// AVX2 GRU / AUGRU step (gru.h): 8 hidden units per vector, masked tail; within a few ulp of
// gru_ref.cpp (Cephes exp in σ and tanh, vecmath_avx2.h; no FMA contraction).
// Compiled with -mavx2 -mfma -mf16c -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

void gru_gates(const float* gi, const float* gh, const float* att, int64_t rows, int64_t h,
               float* state) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t i = 0; i < rows; ++i) {
    const float* a = gi + i * 3 * h;
    const float* b = gh + i * 3 * h;
    float* s = state + i * h;
    const __m256 av = _mm256_set1_ps(att ? att[i] : 0.0f);
    for (int64_t j = 0; j < h; j += 8) {
      const __m256i m = mask8(h - j);
      const __m256 r = vsigmoid(_mm256_add_ps(mload(a + j, m), mload(b + j, m)));
      const __m256 u = vsigmoid(_mm256_add_ps(mload(a + h + j, m), mload(b + h + j, m)));
      const __m256 n =
          vtanh(_mm256_add_ps(mload(a + 2 * h + j, m), _mm256_mul_ps(r, mload(b + 2 * h + j, m))));
      const __m256 sv = mload(s + j, m);
      __m256 y;
      if (att) {
        const __m256 ua = _mm256_mul_ps(av, u);
        y = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(one, ua), sv), _mm256_mul_ps(ua, n));
      } else {
        y = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(one, u), n), _mm256_mul_ps(u, sv));
      }
      _mm256_maskstore_ps(s + j, m, y);
    }
  }
}

}  // namespace dpn::kernels::avx2
