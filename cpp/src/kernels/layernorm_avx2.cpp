// AVX2 layernorm (rows.h): the row sums use 16 lane partial sums and one fixed tree
// (tree_sum16), so they give the same bits as layernorm_avx512.cpp; they round differently from
// layernorm_ref.cpp's in-order sums (a few ulp of the sums of magnitudes). No FMA contraction.
// Compiled with -mavx2 -mfma -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

constexpr int64_t kW = 8;

// Σ_j x[j]: lane j % 16 partial sums, then the fixed tree (tree_sum16).
inline float vsum16(const float* x, int64_t d) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 2 * kW <= d; j += 2 * kW) {
    lo = _mm256_add_ps(lo, _mm256_loadu_ps(x + j));
    hi = _mm256_add_ps(hi, _mm256_loadu_ps(x + j + kW));
  }
  if (j < d) {
    lo = _mm256_add_ps(lo, mload(x + j, mask8(d - j)));
    hi = _mm256_add_ps(hi, mload(x + j + kW, mask8(d - j - kW)));
  }
  return tree_sum16(lo, hi);
}

// Σ_j (x[j] − c)², in the same order (masked lanes add +0).
inline float vsumsq16(const float* x, int64_t d, float c) {
  const __m256 vc = _mm256_set1_ps(c);
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 2 * kW <= d; j += 2 * kW) {
    const __m256 a = _mm256_sub_ps(_mm256_loadu_ps(x + j), vc);
    const __m256 b = _mm256_sub_ps(_mm256_loadu_ps(x + j + kW), vc);
    lo = _mm256_add_ps(lo, _mm256_mul_ps(a, a));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(b, b));
  }
  if (j < d) {
    const __m256i m0 = mask8(d - j), m1 = mask8(d - j - kW);
    const __m256 a = _mm256_and_ps(_mm256_sub_ps(mload(x + j, m0), vc), _mm256_castsi256_ps(m0));
    const __m256 b = _mm256_and_ps(_mm256_sub_ps(mload(x + j + kW, m1), vc), _mm256_castsi256_ps(m1));
    lo = _mm256_add_ps(lo, _mm256_mul_ps(a, a));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(b, b));
  }
  return tree_sum16(lo, hi);
}

}  // namespace

void layernorm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps,
                    float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    const float mean = vsum16(xr, d) / static_cast<float>(d);
    const float v = vsumsq16(xr, d, mean);
    const float rstd = 1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(v / static_cast<float>(d) + eps)));
    const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    int64_t j = 0;
    for (; j + kW <= d; j += kW) {
      const __m256 c = _mm256_sub_ps(_mm256_loadu_ps(xr + j), vm);
      _mm256_storeu_ps(yr + j, _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(c, vr), _mm256_loadu_ps(w + j)),
                                             _mm256_loadu_ps(b + j)));
    }
    if (j < d) {
      const __m256i m = mask8(d - j);
      const __m256 c = _mm256_sub_ps(mload(xr + j, m), vm);
      _mm256_maskstore_ps(
          yr + j, m,
          _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(c, vr), mload(w + j, m)), mload(b + j, m)));
    }
  }
}

}  // namespace dpn::kernels::avx2
