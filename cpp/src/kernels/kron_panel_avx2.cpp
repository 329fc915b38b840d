// AVX2 left panel of the Kronecker GEMM (kron.h): copies and products s·x[i] only, the same
// bits as kron_panel_ref.cpp.
// Compiled with -mavx2 -mfma -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

constexpr int64_t kW = 8;

// dst[i] = s · src[i] (or a copy when !scaled), i < n.
inline void scale_copy(const float* src, int64_t n, float s, bool scaled, float* dst) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const __m256 v = _mm256_loadu_ps(src + i);
    _mm256_storeu_ps(dst + i, scaled ? _mm256_mul_ps(vs, v) : v);
  }
  if (i < n) {
    const __m256i m = mask8(n - i);
    const __m256 v = mload(src + i, m);
    _mm256_maskstore_ps(dst + i, m, scaled ? _mm256_mul_ps(vs, v) : v);
  }
}

}  // namespace

void kron_panel(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                int64_t rows, bool with_h, float* P, int64_t ldp) {
  for (int64_t b = 0; b < rows; ++b) {
    const float* xb = x + b * ldx;
    const float* hb = h + b * ldh;
    float* pb = P + b * ldp;
    scale_copy(xb, m, 1.0f, false, pb);
    for (int64_t k = 0; k < l; ++k) scale_copy(xb, m, hb[k], true, pb + (k + 1) * m);
    if (with_h) scale_copy(hb, l, 1.0f, false, pb + (l + 1) * m);
  }
}

}  // namespace dpn::kernels::avx2
