// Building bfloat16 left-operand blocks for the bfloat16 GEMMs (avx512bf16 and avx512amx): rows of
// A, or of the Kronecker operand [x, h1·x, …, hl·x, h], rounded to bfloat16 (nearest even) as they
// are written, each value from its float32 product. Include ONLY from files compiled with the
// avx512 flags plus -mavx512bf16; internal linkage throughout (see kernels/vecmath_avx512.h).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/vecmath_avx512.h"

namespace dpn::kernels {
namespace {

// d[t] = bfloat16(s·x[t]), t < n (s = 1: x rounded; 1·x is exact).
inline void cvt_scaled(uint16_t* d, const float* x, float s, int64_t n) {
  const __m512 v = _mm512_set1_ps(s);
  int64_t t = 0;
  for (; t + 32 <= n; t += 32) {
    const __m512 lo = _mm512_mul_ps(v, _mm512_loadu_ps(x + t)),
                 hi = _mm512_mul_ps(v, _mm512_loadu_ps(x + t + 16));
    _mm512_storeu_si512(d + t, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
  for (; t < n; t += 16) {
    const __mmask16 k = mask16(n - t);
    const __m256bh r = _mm512_cvtneps_pbh(_mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, x + t)));
    _mm256_mask_storeu_epi16(d + t, k, (__m256i)r);
  }
}

// Rows [m0, m0+mc) × columns [k0, k0+kc) of A into d (leading dimension w >= kc), columns
// [kc, w) set to 0.
inline void rows_block_bf16(const float* A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc,
                            uint16_t* d, int64_t w) {
  for (int64_t i = 0; i < mc; ++i) {
    uint16_t* r = d + i * w;
    cvt_scaled(r, A + (m0 + i) * lda + k0, 1.0f, kc);
    for (int64_t t = kc; t < w; ++t) r[t] = 0;
  }
}

// The same block of the Kronecker operand of x [·, m] and h [·, l] (Kx = (l+1)·m columns of
// products, then h itself when the operand has it): column kk < Kx is h[kk/m - 1]·x[kk % m]
// (x itself for kk < m), column Kx + j is h[j].
inline void kron_block_bf16(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,
                            int64_t Kx, int64_t m0, int64_t mc, int64_t k0, int64_t kc, uint16_t* d,
                            int64_t w) {
  const int64_t end = k0 + kc;
  for (int64_t i = 0; i < mc; ++i) {
    const float* xb = x + (m0 + i) * ldx;
    const float* hb = h + (m0 + i) * ldh;
    uint16_t* r = d + i * w;  // r[kk - k0] for kk in [k0, end)
    int64_t kk = k0;
    while (kk < end && kk < Kx) {
      const int64_t seg = kk / m, off = kk - seg * m, n = (m - off) < (end - kk) ? m - off : end - kk;
      cvt_scaled(r + (kk - k0), xb + off, seg == 0 ? 1.0f : hb[seg - 1], n);
      kk += n;
    }
    if (kk < end) cvt_scaled(r + (kk - k0), hb + (kk - Kx), 1.0f, end - kk);
    for (int64_t t = kc; t < w; ++t) r[t] = 0;
  }
}

}  // namespace
}  // namespace dpn::kernels
