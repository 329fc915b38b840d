// Vector math for the AVX-512 kernels (-mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma): lane masks,
// exp of non-positive values, sigmoid, tanh, and the fixed-order horizontal sum of 16 lanes. Include
// ONLY from files compiled with those flags. Everything here has internal linkage (anonymous namespace),
// so no out-of-line copy can be shared with, or replace, baseline code (isa_kernels.h).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/act.h"

namespace dpn::kernels {
namespace {

inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// exp(x) for x <= 0 (Cephes expf polynomial, ~1 ulp); x below -103 gives 0.
inline __m512 exp_nonpos(__m512 x) {
  x = _mm512_maskz_max_ps(__mmask16(0xFFFF), x, _mm512_set1_ps(-103.0f));
  const __m512 n =
      _mm512_maskz_roundscale_ps(__mmask16(0xFFFF), _mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(__mmask16(0xFFFF), p, n);
}

// Stable logistic and tanh, matching the scalar kernels::sigmoid / std::tanh to a few ulp; NaN in,
// NaN out.
inline __m512 vsigmoid(__m512 x) {
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 e = exp_nonpos(_mm512_sub_ps(_mm512_setzero_ps(), ax));
  const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
  const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 num = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), neg, e);
  const __m512 y = _mm512_div_ps(num, d);
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

inline __m512 vtanh(__m512 x) {
  const __m512 ax = _mm512_abs_ps(x);
  // |x| >= 0.625: (1 - e) / (1 + e) with e = exp(-2|x|), sign restored below.
  const __m512 e = exp_nonpos(_mm512_mul_ps(_mm512_set1_ps(-2.0f), ax));
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 big = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
  // |x| < 0.625: Cephes tanhf odd polynomial.
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745E-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954E-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531E-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036E-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422E-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  // copy the sign of x onto big
  const __m512 sign = _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int32_t(0x80000000u))));
  big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big), _mm512_castps_si512(sign)));
  const __mmask16 is_small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
  const __m512 y = _mm512_mask_mov_ps(big, is_small, small);
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

// A GEMM epilogue's activation: relu() of act.h (NaN stays NaN, -0 becomes +0), sigmoid, tanh.
inline __m512 vact(__m512 v, Act act) {
  const __m512 z = _mm512_setzero_ps();
  if (act == Act::Sigmoid) return vsigmoid(v);
  if (act == Act::Tanh) return vtanh(v);
  if (act == Act::Relu) return _mm512_add_ps(_mm512_max_ps(z, v), z);
  return v;
}

// Σ of the 16 lanes in one fixed tree order, the same for AVX2 and AVX-512:
// s[i] += s[i+8], then s[i] += s[i+4], s[i] += s[i+2], s[0] += s[1].
inline float tree_sum16(__m512 s) {
  const __m256 t = _mm256_add_ps(_mm512_castps512_ps256(s),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
  const __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  const __m128 v = _mm_add_ps(u, _mm_movehl_ps(u, u));
  return _mm_cvtss_f32(_mm_add_ss(v, _mm_shuffle_ps(v, v, 1)));
}

}  // namespace
}  // namespace dpn::kernels
