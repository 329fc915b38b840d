// AVX-512 layernorm (rows.h): the row sums use 16 lane partial sums and one fixed tree
// (tree_sum16), so they give the same bits as layernorm_avx2.cpp; they round differently from
// layernorm_ref.cpp's in-order sums (a few ulp of the sums of magnitudes). No FMA contraction.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -ffp-contract=off; only called
// after the runtime check (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must
// not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

constexpr int64_t kW = 16;

// Σ_j x[j]: lane j % 16 partial sums, then the fixed tree (tree_sum16).
inline float vsum16(const float* x, int64_t d) {
  __m512 s = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + kW <= d; j += kW) s = _mm512_add_ps(s, _mm512_loadu_ps(x + j));
  if (j < d) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mask16(d - j), x + j));
  return tree_sum16(s);
}

// Σ_j (x[j] − c)², in the same order (masked lanes add +0).
inline float vsumsq16(const float* x, int64_t d, float c) {
  const __m512 vc = _mm512_set1_ps(c);
  __m512 s = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + kW <= d; j += kW) {
    const __m512 t = _mm512_sub_ps(_mm512_loadu_ps(x + j), vc);
    s = _mm512_add_ps(s, _mm512_mul_ps(t, t));
  }
  if (j < d) {
    const __mmask16 m = mask16(d - j);
    const __m512 t = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + j), vc);
    s = _mm512_add_ps(s, _mm512_mul_ps(t, t));
  }
  return tree_sum16(s);
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
    const __m512 vm = _mm512_set1_ps(mean), vr = _mm512_set1_ps(rstd);
    int64_t j = 0;
    for (; j + kW <= d; j += kW) {
      const __m512 c = _mm512_sub_ps(_mm512_loadu_ps(xr + j), vm);
      _mm512_storeu_ps(yr + j, _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(c, vr), _mm512_loadu_ps(w + j)),
                                             _mm512_loadu_ps(b + j)));
    }
    if (j < d) {
      const __mmask16 m = mask16(d - j);
      const __m512 c = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + j), vm);
      const __m512 o =
          _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(c, vr), _mm512_maskz_loadu_ps(m, w + j)),
                        _mm512_maskz_loadu_ps(m, b + j));
      _mm512_mask_storeu_ps(yr + j, m, o);
    }
  }
}

}  // namespace dpn::kernels::avx512
