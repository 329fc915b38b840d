// AVX-512 row softmax (softmax.h): within a few ulp of softmax_ref.cpp (Cephes exp,
// vecmath_avx512.h).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -ffp-contract=off; only called
// after the runtime check (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must
// not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

constexpr int64_t kW = 16;

}  // namespace

void softmax_rows(float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (cols <= 0) return;
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * ld;
    __m512 mx = ninf;
    for (int64_t j = 0; j < cols; j += kW)
      mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, mask16(cols - j), v + j));
    const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    // exp(x − max); x − max is NaN exactly when the row holds a NaN or +inf (or max is -inf):
    // then the reference's sum is NaN and so is every output.
    __m512 s = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int64_t j = 0; j < cols; j += kW) {
      const __mmask16 m = mask16(cols - j);
      const __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, v + j), vmx);
      bad |= _mm512_mask_cmp_ps_mask(m, t, t, _CMP_UNORD_Q);
      const __m512 e = _mm512_maskz_mov_ps(m, exp_nonpos(t));
      _mm512_mask_storeu_ps(v + j, m, e);
      s = _mm512_add_ps(s, e);
    }
    const __m512 inv =
        bad ? _mm512_set1_ps(__builtin_nanf("")) : _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(s));
    for (int64_t j = 0; j < cols; j += kW) {
      const __mmask16 m = mask16(cols - j);
      _mm512_mask_storeu_ps(v + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, v + j), inv));
    }
  }
}

}  // namespace dpn::kernels::avx512
