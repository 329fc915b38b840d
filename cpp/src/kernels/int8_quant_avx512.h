// Quantizing float32 rows to u8 for the int8 GEMMs (avx512vnni and avx512amx), as
// gemm_int8_ref.cpp does, bit for bit: a row's scale from its max |value|, then each value (or the
// float32 product s·value of a Kronecker segment) as rint(clamp(v·127/max, ±127)) + 128. Include
// ONLY from files compiled with the avx512 flags; internal linkage throughout (see
// kernels/vecmath_avx512.h).
#pragma once

#include <immintrin.h>

#include <cfloat>
#include <cstdint>

#include "kernels/vecmath_avx512.h"

namespace dpn::kernels {
namespace {

constexpr float kMinMax = 1e-30f;  // as gemm_int8_ref.cpp: a smaller max quantizes to zeros

// max |v[t]|, t < n, and whether some v[t] is not finite (NaN or ±inf).
inline float max_abs(const float* v, int64_t n, bool* bad) {
  __m512 m = _mm512_setzero_ps();
  __mmask16 nf = 0;
  const __m512 big = _mm512_set1_ps(FLT_MAX);
  for (int64_t t = 0; t < n; t += 16) {
    const __mmask16 k = mask16(n - t);
    const __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(k, v + t));
    nf |= _mm512_mask_cmp_ps_mask(k, a, big, _CMP_NLE_UQ);
    m = _mm512_max_ps(m, a);
  }
  *bad = *bad || nf != 0;
  return _mm512_reduce_max_ps(m);
}

// u[t] = rint(clamp(s·v[t] · inv)) + 128, t < n (s = 1: v[t] itself, 1·v exact); inv = 127 / max.
inline void quantize(uint8_t* u, const float* v, float s, float inv, int64_t n) {
  const __m512 vs = _mm512_set1_ps(s), vi = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.0f),
               hi = _mm512_set1_ps(127.0f);
  const __m512i off = _mm512_set1_epi32(128);
  for (int64_t t = 0; t < n; t += 16) {
    const __mmask16 k = mask16(n - t);
    __m512 x = _mm512_maskz_loadu_ps(k, v + t);
    if (s != 1.0f) x = _mm512_mul_ps(x, vs);
    // max(x, -127) then min(·, 127): the reference's std::min(127, std::max(-127, x)) bit for bit.
    x = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, vi), lo), hi);
    _mm512_mask_cvtepi32_storeu_epi8(u + t, k, _mm512_add_epi32(_mm512_cvtps_epi32(x), off));
  }
}

// The row's scale from its max (and non-finite values): NaN makes every output of the row NaN.
inline float row_scale(float amax, bool bad, float* inv) {
  if (bad || !(amax <= FLT_MAX)) return *inv = 0.0f, __builtin_nanf("");
  if (!(amax >= kMinMax)) return *inv = 0.0f, 0.0f;
  *inv = 127.0f / amax;
  return amax / 127.0f;
}

// The scale of row [x, h1·x, …, hl·x, (h)] without building it: its max is max(max|x|, |h_i|·max|x|,
// |h_i|) (rounding is monotone, so that is the max of the float32 products); inv as row_scale.
inline float kron_row_scale(const float* xb, int64_t m, const float* hb, int64_t l, bool with_h,
                            float* inv) {
  bool bad = false;
  const float mx = max_abs(xb, m, &bad);
  float amax = mx;
  for (int64_t k = 0; k < l; ++k) {
    const float s = __builtin_fabsf(hb[k]);
    if (!(s <= FLT_MAX) && (m > 0 || with_h)) bad = true;
    if (m > 0) amax = __builtin_fmaxf(amax, s * mx);
    if (with_h) amax = __builtin_fmaxf(amax, s);
  }
  return row_scale(amax, bad, inv);
}

}  // namespace
}  // namespace dpn::kernels
