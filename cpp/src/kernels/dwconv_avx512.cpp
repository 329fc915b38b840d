// AVX-512 dynamic depthwise convolution and its mean (dwconv.h): 16 channels per vector, masked
// tail; products and sums rounded separately (built with -ffp-contract=off), the same bits as
// dwconv_ref.cpp. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -ffp-contract=off; only
// called after the runtime check (cpu::available(Isa::Avx512)).
#include <immintrin.h>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::avx512 {

void dwconv_rows(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  const int64_t h = k / 2;
  for (int64_t j = 0; j < n; j += 16) {
    const int64_t r = n - j < 16 ? n - j : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1u);
    for (int64_t i = 0; i < L; ++i) {
      __m512 acc = _mm512_setzero_ps();
      const int64_t t0 = h - i > 0 ? h - i : 0, t1 = L - i + h < k ? L - i + h : k;
      for (int64_t t = t0; t < t1; ++t) {
        const __m512 kv = _mm512_maskz_loadu_ps(m, K + t * n + j);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + (i + t - h) * n + j);
        acc = _mm512_add_ps(acc, _mm512_mul_ps(kv, xv));
      }
      _mm512_mask_storeu_ps(y + i * n + j, m, acc);
    }
  }
}

void dwconv_mean(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  const int64_t h = k / 2;
  const __m512 inv = _mm512_set1_ps(L > 0 ? 1.0f / static_cast<float>(L) : 0.0f);
  for (int64_t j = 0; j < n; j += 16) {
    const int64_t r = n - j < 16 ? n - j : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1u);
    if (L <= 0) {
      _mm512_mask_storeu_ps(y + j, m, _mm512_setzero_ps());
      continue;
    }
    __m512 S = _mm512_setzero_ps();
    for (int64_t i = 0; i < L; ++i) S = _mm512_add_ps(S, _mm512_maskz_loadu_ps(m, x + i * n + j));
    __m512 acc = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, K + h * n + j), S);
    __m512 P = _mm512_setzero_ps(), Q = _mm512_setzero_ps();
    for (int64_t o = 1; o <= h && o < L; ++o) {
      P = _mm512_add_ps(P, _mm512_maskz_loadu_ps(m, x + (o - 1) * n + j));
      Q = _mm512_add_ps(Q, _mm512_maskz_loadu_ps(m, x + (L - o) * n + j));
      acc = _mm512_add_ps(
          acc, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, K + (h + o) * n + j), _mm512_sub_ps(S, P)));
      acc = _mm512_add_ps(
          acc, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, K + (h - o) * n + j), _mm512_sub_ps(S, Q)));
    }
    _mm512_mask_storeu_ps(y + j, m, _mm512_mul_ps(acc, inv));
  }
}

}  // namespace dpn::kernels::avx512
