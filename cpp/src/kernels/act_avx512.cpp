// AVX-512 activations (act.h): relu gives act_ref.cpp's bits; sigmoid and tanh are within a few
// ulp (Cephes exp, vecmath_avx512.h).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -ffp-contract=off; only called
// after the runtime check (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must
// not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

constexpr int64_t kW = 16;

template <class F>
inline void map_inplace(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    const __m512 a = f(_mm512_loadu_ps(x + i)), b = f(_mm512_loadu_ps(x + i + kW));
    _mm512_storeu_ps(x + i, a);
    _mm512_storeu_ps(x + i + kW, b);
  }
  for (; i < n; i += kW) {
    const __mmask16 m = mask16(n - i);
    _mm512_mask_storeu_ps(x + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

void act_inplace(float* x, int64_t n, Act a) {
  switch (a) {
    case Act::Identity: return;
    case Act::Relu: {
      // relu() of act.h: max(+0, x) returns x for NaN; + 0 turns -0 into +0.
      const __m512 z = _mm512_setzero_ps();
      return map_inplace(x, n, [z](__m512 v) { return _mm512_add_ps(_mm512_max_ps(z, v), z); });
    }
    case Act::Sigmoid: return map_inplace(x, n, [](__m512 v) { return vsigmoid(v); });
    case Act::Tanh: return map_inplace(x, n, [](__m512 v) { return vtanh(v); });
  }
}

}  // namespace dpn::kernels::avx512
