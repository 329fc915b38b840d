// AVX2+FMA KFAtt loops (kfatt.h): as kfatt_avx512.cpp with 8 channels a vector (a key's dot
// product 16 channels a step in two vectors; the weighted sum 32 channels of the accumulator in
// registers). Compiled with -mavx2 -mfma; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

void kfatt_scores(const float* q, const float* K, int64_t ldk, int64_t n, int64_t dh, float scale,
                  float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* k = K + t * ldk;
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t e = 0; e < dh; e += 16) {
      const __m256i m0 = mask8(dh - e), m1 = mask8(dh - e - 8);
      lo = _mm256_fmadd_ps(mload(q + e, m0), mload(k + e, m0), lo);
      hi = _mm256_fmadd_ps(mload(q + e + 8, m1), mload(k + e + 8, m1), hi);
    }
    out[t] = tree_sum16(lo, hi) * scale;
  }
}

void kfatt_wsum(const float* w, const float* V, int64_t ldv, int64_t n, int64_t dh, float* acc) {
  for (int64_t e0 = 0; e0 < dh; e0 += 32) {
    __m256 a[4];
    __m256i m[4];
    bool any[4];
    for (int j = 0; j < 4; ++j) {
      any[j] = dh - e0 - 8 * j > 0;
      m[j] = mask8(dh - e0 - 8 * j);
      a[j] = any[j] ? mload(acc + e0 + 8 * j, m[j]) : _mm256_setzero_ps();
    }
    for (int64_t t = 0; t < n; ++t) {
      const __m256 wt = _mm256_set1_ps(w[t]);
      const float* v = V + t * ldv + e0;
      for (int j = 0; j < 4; ++j)
        if (any[j]) a[j] = _mm256_fmadd_ps(wt, mload(v + 8 * j, m[j]), a[j]);
    }
    for (int j = 0; j < 4; ++j)
      if (any[j]) _mm256_maskstore_ps(acc + e0 + 8 * j, m[j], a[j]);
  }
}

}  // namespace dpn::kernels::avx2
