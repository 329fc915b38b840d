// AVX-512 field mix (field_mix.h): 16 output columns per vector, multiply then add (no FMA; built
// with -ffp-contract=off) in the reference's order, so every lane gives the reference's bits.
#include <immintrin.h>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::avx512 {

void field_mix(const float* W, const float* T, int64_t rows, int64_t t, int64_t c, const float* bias,
               bool accumulate, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* Tr = T + r * t * c;
    float* yr = y + r * t * c;
    for (int64_t i = 0; i < t; ++i) {
      float* yi = yr + i * c;
      const float* wi = W + i * t;
      int64_t j = 0;
      for (; j + 16 <= c; j += 16) {
        __m512 acc = accumulate ? _mm512_loadu_ps(yi + j)
                     : bias     ? _mm512_loadu_ps(bias + j)
                                : _mm512_setzero_ps();
        for (int64_t k = 0; k < t; ++k)
          acc =
              _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(wi[k]), _mm512_loadu_ps(Tr + k * c + j)));
        _mm512_storeu_ps(yi + j, acc);
      }
      for (; j < c; ++j) {
        float acc = accumulate ? yi[j] : bias ? bias[j] : 0.0f;
        for (int64_t k = 0; k < t; ++k) acc = acc + wi[k] * Tr[k * c + j];
        yi[j] = acc;
      }
    }
  }
}

}  // namespace dpn::kernels::avx512
