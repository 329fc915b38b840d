// AVX2 field attention (field_attn.h): the weighted sum over context rows, 8 lanes at a time.
// Multiply then add (no FMA; built with -ffp-contract=off) in the reference's order, so every lane
// gives the reference's bits.
#include <immintrin.h>

#include "kernels/field_attn.h"

namespace dpn::kernels {

void field_attention_avx2(float* s, const float* z, int64_t rows, int64_t t1, int64_t t2,
                          int64_t n, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * t2 * t1;
    const float* zr = z + r * t2 * n;
    float* o = out + r * t1 * n;
    field_attention_weights(sr, t1, t2);
    for (int64_t i = 0; i < t1; ++i) {
      float* oi = o + i * n;
      int64_t k = 0;
      for (; k + 8 <= n; k += 8) {
        __m256 acc = _mm256_mul_ps(_mm256_set1_ps(sr[i]), _mm256_loadu_ps(zr + k));
        for (int64_t j = 1; j < t2; ++j)
          acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(sr[j * t1 + i]),
                                              _mm256_loadu_ps(zr + j * n + k)));
        _mm256_storeu_ps(oi + k, acc);
      }
      for (; k < n; ++k) {
        float a = sr[i] * zr[k];
        for (int64_t j = 1; j < t2; ++j) a = a + sr[j * t1 + i] * zr[j * n + k];
        oi[k] = a;
      }
    }
  }
}

}  // namespace dpn::kernels
