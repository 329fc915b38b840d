// AVX2 attention core (attention.h): as attention_avx512.cpp with 8 lanes (vecmath_avx2.h).
// Compiled with -mavx2 -mfma; only called after the runtime check (cpu::available(Isa::Avx2)).
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {
inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline float hsum8(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  m = _mm_add_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
// s[0:8·NB) = scale · q·k_j for the keys of Kt's next NB blocks (n keys left), max into *mx.
template <int NB>
inline void scores(const float* q, float scale, const float* Kt, int64_t Lp, int64_t dh, int64_t n,
                   float* s, __m256* mx) {
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 acc[NB];
  __m256i m[NB];
  for (int k = 0; k < NB; ++k) {
    acc[k] = _mm256_setzero_ps();
    m[k] = mask8(n - 8 * k);
  }
  for (int64_t e = 0; e < dh; ++e) {
    const __m256 qe = _mm256_set1_ps(q[e] * scale);
    const float* kt = Kt + e * Lp;
    for (int k = 0; k < NB; ++k)
      acc[k] = _mm256_fmadd_ps(qe, _mm256_maskload_ps(kt + 8 * k, m[k]), acc[k]);
  }
  for (int k = 0; k < NB; ++k) {
    _mm256_maskstore_ps(s + 8 * k, m[k], acc[k]);
    *mx = _mm256_max_ps(*mx, _mm256_blendv_ps(ninf, acc[k], _mm256_castsi256_ps(m[k])));
  }
}

}  // namespace

void attention_rows(const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H, float scale,
                    float* A, int64_t lda, float* scratch) {
  const int64_t dh = d / H, Lp = (L + 31) / 32 * 32;
  float* Kt = scratch;
  float* s = scratch + dh * Lp;
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t j = 0; j < L; ++j)
      for (int64_t e = 0; e < dh; ++e) Kt[e * Lp + j] = qkv[j * ldq + d + h * dh + e];
    for (int64_t i = 0; i < L; ++i) {
      const float* q = qkv + i * ldq + h * dh;
      // Up to four independent accumulators (32 keys) per pass, as in attention_avx512.cpp.
      __m256 mx = ninf;
      for (int64_t j = 0; j < L; j += 32) {
        const int64_t nb = (L - j + 7) / 8;
        if (nb >= 4)
          scores<4>(q, scale, Kt + j, Lp, dh, L - j, s + j, &mx);
        else if (nb == 3)
          scores<3>(q, scale, Kt + j, Lp, dh, L - j, s + j, &mx);
        else if (nb == 2)
          scores<2>(q, scale, Kt + j, Lp, dh, L - j, s + j, &mx);
        else
          scores<1>(q, scale, Kt + j, Lp, dh, L - j, s + j, &mx);
      }
      const __m256 vmx = _mm256_set1_ps(hmax8(mx));
      __m256 sum = _mm256_setzero_ps();
      for (int64_t j = 0; j < L; j += 8) {
        const __m256i m = mask8(L - j);
        __m256 ex = exp_nonpos(_mm256_sub_ps(_mm256_maskload_ps(s + j, m), vmx));
        ex = _mm256_and_ps(ex, _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(s + j, m, ex);
        sum = _mm256_add_ps(sum, ex);
      }
      const __m256 inv = _mm256_set1_ps(1.0f / hsum8(sum));
      float* a = A + i * lda + h * dh;
      for (int64_t e = 0; e < dh; e += 8) {
        const __m256i m = mask8(dh - e);
        const float* v = qkv + 2 * d + h * dh + e;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        int64_t j = 0;
        for (; j + 4 <= L; j += 4)
          for (int k = 0; k < 4; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(s[j + k]), _mm256_maskload_ps(v + (j + k) * ldq, m),
                                     acc[k]);
        for (; j < L; ++j)
          acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), _mm256_maskload_ps(v + j * ldq, m), acc[0]);
        const __m256 sum4 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        _mm256_maskstore_ps(a + e, m, _mm256_mul_ps(sum4, inv));
      }
    }
  }
}

}  // namespace dpn::kernels::avx2
