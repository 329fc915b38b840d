// AVX2 DCN cross (rows.h): the row's dot product uses 16 lane partial sums and one fixed
// tree (tree_sum16), the same bits as cross_avx512.cpp; given that dot product, the same bits as
// cross_ref.cpp. No FMA contraction.
// Compiled with -mavx2 -mfma -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

constexpr int64_t kW = 8;

// Σ_j x[j]·y[j], in the same order.
inline float vdot16(const float* x, const float* y, int64_t d) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 2 * kW <= d; j += 2 * kW) {
    lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(x + j + kW), _mm256_loadu_ps(y + j + kW)));
  }
  if (j < d) {
    const __m256i m0 = mask8(d - j), m1 = mask8(d - j - kW);
    lo = _mm256_add_ps(lo, _mm256_mul_ps(mload(x + j, m0), mload(y + j, m0)));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(mload(x + j + kW, m1), mload(y + j + kW, m1)));
  }
  return tree_sum16(lo, hi);
}

}  // namespace

void cross_rows(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = x0 + r * d;
    const float* l = xl + r * d;
    float* o = y + r * d;
    const __m256 s = _mm256_set1_ps(vdot16(l, w, d));
    int64_t j = 0;
    for (; j + kW <= d; j += kW)
      _mm256_storeu_ps(o + j, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(a + j), s),
                                                          _mm256_loadu_ps(b + j)),
                                            _mm256_loadu_ps(l + j)));
    if (j < d) {
      const __m256i m = mask8(d - j);
      _mm256_maskstore_ps(
          o + j, m,
          _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(mload(a + j, m), s), mload(b + j, m)),
                        mload(l + j, m)));
    }
  }
}

}  // namespace dpn::kernels::avx2
