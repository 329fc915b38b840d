// AVX2 field attention (field_attn.h): the weighted sum over context rows, 8 lanes at a time.
// The softmax runs 1 vector per target-field chunk with the Cephes exp of vecmath (a few ulp from
// the reference's std::exp); the weighted sum multiplies then adds (no FMA; -ffp-contract=off) in
// the reference's order.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

// Softmax over context fields j for every target field i of one row, 8 targets per vector
// (scores [t2, t1]: the targets of one j are contiguous).
void softmax_cols(float* s, int64_t t1, int64_t t2) {
  for (int64_t i0 = 0; i0 < t1; i0 += 8) {
    const __m256i m = mask8(t1 - i0);
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 mx = _mm256_maskload_ps(s + i0, m);
    for (int64_t j = 1; j < t2; ++j) mx = _mm256_max_ps(mx, _mm256_maskload_ps(s + j * t1 + i0, m));
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < t2; ++j) {
      const __m256 e = exp_nonpos(_mm256_sub_ps(_mm256_maskload_ps(s + j * t1 + i0, m), mx));
      _mm256_maskstore_ps(s + j * t1 + i0, m, e);
      sum = _mm256_add_ps(sum, e);
    }
    const __m256 inv = _mm256_div_ps(one, _mm256_blendv_ps(one, sum, _mm256_castsi256_ps(m)));
    for (int64_t j = 0; j < t2; ++j)
      _mm256_maskstore_ps(s + j * t1 + i0, m,
                          _mm256_mul_ps(_mm256_maskload_ps(s + j * t1 + i0, m), inv));
  }
}

}  // namespace

void field_attention(float* s, const float* z, int64_t rows, int64_t t1, int64_t t2, int64_t n,
                     float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * t2 * t1;
    const float* zr = z + r * t2 * n;
    float* o = out + r * t1 * n;
    softmax_cols(sr, t1, t2);
    for (int64_t i = 0; i < t1; ++i) {
      float* oi = o + i * n;
      int64_t k = 0;
      for (; k + 8 <= n; k += 8) {
        __m256 acc = _mm256_mul_ps(_mm256_set1_ps(sr[i]), _mm256_loadu_ps(zr + k));
        for (int64_t j = 1; j < t2; ++j)
          acc = _mm256_add_ps(
              acc, _mm256_mul_ps(_mm256_set1_ps(sr[j * t1 + i]), _mm256_loadu_ps(zr + j * n + k)));
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

}  // namespace dpn::kernels::avx2
