// AVX2 activations (act.h): relu gives act_ref.cpp's bits; sigmoid and tanh are within a few
// ulp (Cephes exp, vecmath_avx2.h).
// Compiled with -mavx2 -mfma -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

constexpr int64_t kW = 8;

template <class F>
inline void map_inplace(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    const __m256 a = f(_mm256_loadu_ps(x + i)), b = f(_mm256_loadu_ps(x + i + kW));
    _mm256_storeu_ps(x + i, a);
    _mm256_storeu_ps(x + i + kW, b);
  }
  for (; i < n; i += kW) {
    const __m256i m = mask8(n - i);
    _mm256_maskstore_ps(x + i, m, f(mload(x + i, m)));
  }
}

}  // namespace

void act_inplace(float* x, int64_t n, Act a) {
  switch (a) {
    case Act::Identity: return;
    case Act::Relu: {
      // relu() of act.h: max(+0, x) returns x for NaN; + 0 turns -0 into +0.
      const __m256 z = _mm256_setzero_ps();
      return map_inplace(x, n, [z](__m256 v) { return _mm256_add_ps(_mm256_max_ps(z, v), z); });
    }
    case Act::Sigmoid: return map_inplace(x, n, [](__m256 v) { return vsigmoid(v); });
    case Act::Tanh: return map_inplace(x, n, [](__m256 v) { return vtanh(v); });
  }
}

}  // namespace dpn::kernels::avx2
