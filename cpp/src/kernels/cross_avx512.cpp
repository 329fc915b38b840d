// AVX-512 DCN cross (rows.h): the row's dot product uses 16 lane partial sums and one fixed
// tree (tree_sum16), the same bits as cross_avx2.cpp; given that dot product, the same bits as
// cross_ref.cpp. No FMA contraction.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -ffp-contract=off; only called
// after the runtime check (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must
// not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

constexpr int64_t kW = 16;

// Σ_j x[j]·y[j], in the same order.
inline float vdot16(const float* x, const float* y, int64_t d) {
  __m512 s = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + kW <= d; j += kW)
    s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j)));
  if (j < d) {
    const __mmask16 m = mask16(d - j);
    s = _mm512_add_ps(s,
                      _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), _mm512_maskz_loadu_ps(m, y + j)));
  }
  return tree_sum16(s);
}

}  // namespace

void cross_rows(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = x0 + r * d;
    const float* l = xl + r * d;
    float* o = y + r * d;
    const __m512 s = _mm512_set1_ps(vdot16(l, w, d));
    int64_t j = 0;
    for (; j + kW <= d; j += kW)
      _mm512_storeu_ps(o + j, _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(a + j), s),
                                                          _mm512_loadu_ps(b + j)),
                                            _mm512_loadu_ps(l + j)));
    if (j < d) {
      const __mmask16 m = mask16(d - j);
      const __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + j), s),
                                                   _mm512_maskz_loadu_ps(m, b + j)),
                                     _mm512_maskz_loadu_ps(m, l + j));
      _mm512_mask_storeu_ps(o + j, m, v);
    }
  }
}

}  // namespace dpn::kernels::avx512
