// AVX2 row softmax (softmax.h): within a few ulp of softmax_ref.cpp (Cephes exp,
// vecmath_avx2.h).
// Compiled with -mavx2 -mfma -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

constexpr int64_t kW = 8;

inline float hmax(__m256 v) {
  __m128 u = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  u = _mm_max_ps(u, _mm_movehl_ps(u, u));
  return _mm_cvtss_f32(_mm_max_ss(u, _mm_shuffle_ps(u, u, 1)));
}

inline float hsum(__m256 v) {
  __m128 u = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  u = _mm_add_ps(u, _mm_movehl_ps(u, u));
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

}  // namespace

void softmax_rows(float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (cols <= 0) return;
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * ld;
    __m256 mx = ninf;
    for (int64_t j = 0; j < cols; j += kW) {
      const __m256i m = mask8(cols - j);
      mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, mload(v + j, m), _mm256_castsi256_ps(m)));
    }
    const __m256 vmx = _mm256_set1_ps(hmax(mx));
    // exp(x − max); x − max is NaN exactly when the row holds a NaN or +inf (or max is -inf):
    // then the reference's sum is NaN and so is every output.
    __m256 s = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int64_t j = 0; j < cols; j += kW) {
      const __m256i m = mask8(cols - j);
      const __m256 mf = _mm256_castsi256_ps(m);
      const __m256 t = _mm256_sub_ps(mload(v + j, m), vmx);
      bad = _mm256_or_ps(bad, _mm256_and_ps(mf, _mm256_cmp_ps(t, t, _CMP_UNORD_Q)));
      const __m256 e = _mm256_and_ps(mf, exp_nonpos(t));
      _mm256_maskstore_ps(v + j, m, e);
      s = _mm256_add_ps(s, e);
    }
    const __m256 inv =
        _mm256_movemask_ps(bad) ? _mm256_set1_ps(__builtin_nanf("")) : _mm256_set1_ps(1.0f / hsum(s));
    for (int64_t j = 0; j < cols; j += kW) {
      const __m256i m = mask8(cols - j);
      _mm256_maskstore_ps(v + j, m, _mm256_mul_ps(mload(v + j, m), inv));
    }
  }
}

}  // namespace dpn::kernels::avx2
