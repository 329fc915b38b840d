// AVX-512 attention core (attention.h): scores for 16 keys at a time from keys transposed per head,
// vector exp (vecmath_avx512.h), values accumulated 16 channels at a time; masked tails.
// Compiled with -mavx512f -mfma...; only called after the runtime check (cpu::available(Isa::Avx512)).
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

// s[0:16·NB) = scale · q·k_j for the keys of Kt's next NB blocks (n keys left), max into *mx.
template <int NB>
inline void scores(const float* q, float scale, const float* Kt, int64_t Lp, int64_t dh, int64_t n,
                   float* s, __m512* mx) {
  __m512 acc[NB];
  __mmask16 m[NB];
  for (int k = 0; k < NB; ++k) {
    acc[k] = _mm512_setzero_ps();
    m[k] = mask16(n - 16 * k);
  }
  for (int64_t e = 0; e < dh; ++e) {
    const __m512 qe = _mm512_set1_ps(q[e] * scale);
    const float* kt = Kt + e * Lp;
    for (int k = 0; k < NB; ++k)
      acc[k] = _mm512_fmadd_ps(qe, _mm512_maskz_loadu_ps(m[k], kt + 16 * k), acc[k]);
  }
  for (int k = 0; k < NB; ++k) {
    _mm512_mask_storeu_ps(s + 16 * k, m[k], acc[k]);
    *mx = _mm512_mask_max_ps(*mx, m[k], *mx, acc[k]);
  }
}

}  // namespace

void attention_rows(const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H, float scale,
                    float* A, int64_t lda, float* scratch) {
  const int64_t dh = d / H, Lp = (L + 63) / 64 * 64;
  float* Kt = scratch;           // [dh, Lp]
  float* s = scratch + dh * Lp;  // [Lp]
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t j = 0; j < L; ++j)
      for (int64_t e = 0; e < dh; ++e) Kt[e * Lp + j] = qkv[j * ldq + d + h * dh + e];
    for (int64_t i = 0; i < L; ++i) {
      const float* q = qkv + i * ldq + h * dh;
      // Up to four independent accumulators (64 keys) per pass: an FMA chain per key block would
      // wait on the FMA latency at every step; blocks past the length are not computed.
      __m512 mx = ninf;
      for (int64_t j = 0; j < L; j += 64) {
        const int64_t nb = (L - j + 15) / 16;
        if (nb >= 4)
          scores<4>(q, scale, Kt + j, Lp, dh, L - j, s + j, &mx);
        else if (nb == 3)
          scores<3>(q, scale, Kt + j, Lp, dh, L - j, s + j, &mx);
        else if (nb == 2)
          scores<2>(q, scale, Kt + j, Lp, dh, L - j, s + j, &mx);
        else
          scores<1>(q, scale, Kt + j, Lp, dh, L - j, s + j, &mx);
      }
      const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < L; j += 16) {
        const __mmask16 m = mask16(L - j);
        const __m512 ex =
            _mm512_maskz_mov_ps(m, exp_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), vmx)));
        _mm512_mask_storeu_ps(s + j, m, ex);
        sum = _mm512_add_ps(sum, ex);
      }
      const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
      float* a = A + i * lda + h * dh;
      for (int64_t e = 0; e < dh; e += 16) {
        const __mmask16 m = mask16(dh - e);
        const float* v = qkv + 2 * d + h * dh + e;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
        int64_t j = 0;
        for (; j + 4 <= L; j += 4)
          for (int k = 0; k < 4; ++k)
            acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(s[j + k]),
                                     _mm512_maskz_loadu_ps(m, v + (j + k) * ldq), acc[k]);
        for (; j < L; ++j)
          acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(s[j]), _mm512_maskz_loadu_ps(m, v + j * ldq), acc[0]);
        const __m512 sum4 = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_mask_storeu_ps(a + e, m, _mm512_mul_ps(sum4, inv));
      }
    }
  }
}

}  // namespace dpn::kernels::avx512
