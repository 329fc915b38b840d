// AVX2 dynamic depthwise convolution and its mean (dwconv.h): 8 channels per vector, masked tail;
// products and sums rounded separately (built with -ffp-contract=off), the same bits as dwconv_ref.cpp.
// Compiled with -mavx2 -mfma -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)).
#include <immintrin.h>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::avx2 {

namespace {
inline __m256i tail_mask(int64_t r) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)), idx);
}
}  // namespace

void dwconv_rows(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  const int64_t h = k / 2;
  for (int64_t j = 0; j < n; j += 8) {
    const __m256i m = tail_mask(n - j < 8 ? n - j : 8);
    for (int64_t i = 0; i < L; ++i) {
      __m256 acc = _mm256_setzero_ps();
      const int64_t t0 = h - i > 0 ? h - i : 0, t1 = L - i + h < k ? L - i + h : k;
      for (int64_t t = t0; t < t1; ++t) {
        const __m256 kv = _mm256_maskload_ps(K + t * n + j, m);
        const __m256 xv = _mm256_maskload_ps(x + (i + t - h) * n + j, m);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(kv, xv));
      }
      _mm256_maskstore_ps(y + i * n + j, m, acc);
    }
  }
}

void dwconv_mean(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  const int64_t h = k / 2;
  const __m256 inv = _mm256_set1_ps(L > 0 ? 1.0f / static_cast<float>(L) : 0.0f);
  for (int64_t j = 0; j < n; j += 8) {
    const __m256i m = tail_mask(n - j < 8 ? n - j : 8);
    if (L <= 0) {
      _mm256_maskstore_ps(y + j, m, _mm256_setzero_ps());
      continue;
    }
    __m256 S = _mm256_setzero_ps();
    for (int64_t i = 0; i < L; ++i) S = _mm256_add_ps(S, _mm256_maskload_ps(x + i * n + j, m));
    __m256 acc = _mm256_mul_ps(_mm256_maskload_ps(K + h * n + j, m), S);
    __m256 P = _mm256_setzero_ps(), Q = _mm256_setzero_ps();
    for (int64_t o = 1; o <= h && o < L; ++o) {
      P = _mm256_add_ps(P, _mm256_maskload_ps(x + (o - 1) * n + j, m));
      Q = _mm256_add_ps(Q, _mm256_maskload_ps(x + (L - o) * n + j, m));
      acc = _mm256_add_ps(
          acc, _mm256_mul_ps(_mm256_maskload_ps(K + (h + o) * n + j, m), _mm256_sub_ps(S, P)));
      acc = _mm256_add_ps(
          acc, _mm256_mul_ps(_mm256_maskload_ps(K + (h - o) * n + j, m), _mm256_sub_ps(S, Q)));
    }
    _mm256_maskstore_ps(y + j, m, _mm256_mul_ps(acc, inv));
  }
}

}  // namespace dpn::kernels::avx2
