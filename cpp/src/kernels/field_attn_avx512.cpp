// AVX-512 field attention (field_attn.h): the weighted sum over context rows, 16 lanes at a time.
// The softmax runs 1 vector per target-field chunk with the Cephes exp of vecmath (a few ulp from
// the reference's std::exp); the weighted sum multiplies then adds (no FMA; -ffp-contract=off) in
// the reference's order.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

// Softmax over context fields j for every target field i of one row, 16 targets per vector
// (scores [t2, t1]: the targets of one j are contiguous).
void softmax_cols(float* s, int64_t t1, int64_t t2) {
  for (int64_t i0 = 0; i0 < t1; i0 += 16) {
    const __mmask16 m = mask16(t1 - i0);
    __m512 mx = _mm512_maskz_loadu_ps(m, s + i0);
    for (int64_t j = 1; j < t2; ++j) mx = _mm512_max_ps(mx, _mm512_maskz_loadu_ps(m, s + j * t1 + i0));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < t2; ++j) {
      const __m512 e = exp_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j * t1 + i0), mx));
      _mm512_mask_storeu_ps(s + j * t1 + i0, m, e);
      sum = _mm512_add_ps(sum, e);
    }
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 inv = _mm512_div_ps(one, _mm512_mask_blend_ps(m, one, sum));  // 1 in unused lanes
    for (int64_t j = 0; j < t2; ++j)
      _mm512_mask_storeu_ps(s + j * t1 + i0, m,
                            _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j * t1 + i0), inv));
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
      for (; k + 16 <= n; k += 16) {
        __m512 acc = _mm512_mul_ps(_mm512_set1_ps(sr[i]), _mm512_loadu_ps(zr + k));
        for (int64_t j = 1; j < t2; ++j)
          acc = _mm512_add_ps(
              acc, _mm512_mul_ps(_mm512_set1_ps(sr[j * t1 + i]), _mm512_loadu_ps(zr + j * n + k)));
        _mm512_storeu_ps(oi + k, acc);
      }
      for (; k < n; ++k) {
        float a = sr[i] * zr[k];
        for (int64_t j = 1; j < t2; ++j) a = a + sr[j * t1 + i] * zr[j * n + k];
        oi[k] = a;
      }
    }
  }
}

}  // namespace dpn::kernels::avx512
