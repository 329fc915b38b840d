// AVX2+FMA GEMM: 6×16 register tile (12 ymm accumulators), B packed in 16-wide panels, A read in
// place (row-major, broadcast from memory; measured faster here than packing it). Compiled with
// -mavx2 -mfma; only called after the runtime check (cpu::available(Isa::Avx2)). See gemm_isa.h
// for what this file must not use.
#include <immintrin.h>

#include "kernels/gemm_isa.h"

namespace dpn::kernels {

namespace {

constexpr int64_t kNR = 16;
constexpr int64_t kMR = 6;
#ifndef DPN_AVX2_KC
#define DPN_AVX2_KC 256
#endif
#ifndef DPN_AVX2_MC
#define DPN_AVX2_MC 72
#endif
constexpr int64_t kKC = DPN_AVX2_KC;
constexpr int64_t kMC = DPN_AVX2_MC;  // multiple of kMR

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

alignas(32) const int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
// Lane mask for the first n (clamped to 0..8) of 8 floats.
inline __m256i mask8(int64_t n) {
  n = n < 0 ? 0 : n > 8 ? 8 : n;
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - n));
}

// exp(x) for x <= 0 (Cephes expf polynomial, ~1 ulp); clamped at -87 (about 1.6e-38).
inline __m256 exp_nonpos(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 abs8(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }

// Stable logistic and tanh, matching the scalar kernels::sigmoid / std::tanh to a few ulp; NaN in,
// NaN out.
inline __m256 vsigmoid(__m256 x) {
  const __m256 e = exp_nonpos(_mm256_sub_ps(_mm256_setzero_ps(), abs8(x)));
  const __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), e);
  const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 y = _mm256_div_ps(_mm256_blendv_ps(_mm256_set1_ps(1.0f), e, neg), d);
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

inline __m256 vtanh(__m256 x) {
  const __m256 ax = abs8(x);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp_nonpos(_mm256_mul_ps(_mm256_set1_ps(-2.0f), ax));
  __m256 big = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  big = _mm256_or_ps(big, _mm256_and_ps(x, _mm256_set1_ps(-0.0f)));  // sign of x
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745E-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036E-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422E-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  const __m256 y =
      _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// NC: vector columns computed (2 = full panel; 1 when the panel edge has at most half a panel).
template <int MR, int NC>
void tile(const float* ap, int64_t lda, const float* bp, int64_t kc, float* C, int64_t ldc, int64_t nr,
          const float* bias, bool first, bool last, Act act) {
  const __m256i m0 = mask8(nr), m1 = mask8(nr - 8);
  __m256 c0[MR], c1[NC == 2 ? MR : 1];
  if (first) {
    const __m256 b0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
    __m256 b1 = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      c0[i] = b0;
      if constexpr (NC == 2) c1[i] = b1;
    }
  } else {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm256_maskload_ps(C + i * ldc, m0);
      if constexpr (NC == 2) c1[i] = _mm256_maskload_ps(C + i * ldc + 8, m1);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(bp);
    __m256 b1 = b0;
    if constexpr (NC == 2) b1 = _mm256_loadu_ps(bp + 8);
    bp += kNR;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + i * lda);
      c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
      if constexpr (NC == 2) c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
    }
    ++ap;
  }
  if (last && act == Act::Sigmoid) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      c0[i] = vsigmoid(c0[i]);
      if constexpr (NC == 2) c1[i] = vsigmoid(c1[i]);
    }
  } else if (last && act == Act::Tanh) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      c0[i] = vtanh(c0[i]);
      if constexpr (NC == 2) c1[i] = vtanh(c1[i]);
    }
  }
  if (last && act == Act::Relu) {
    const __m256 z = _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm256_max_ps(c0[i], z);
      if constexpr (NC == 2) c1[i] = _mm256_max_ps(c1[i], z);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    _mm256_maskstore_ps(C + i * ldc, m0, c0[i]);
    if constexpr (NC == 2) _mm256_maskstore_ps(C + i * ldc + 8, m1, c1[i]);
  }
}

template <int NC>
void run_tile(int64_t mr, const float* ap, int64_t lda, const float* bp, int64_t kc, float* C, int64_t ldc,
              int64_t nr, const float* bias, bool first, bool last, Act act) {
  switch (mr) {
    case 6: return tile<6, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 5: return tile<5, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 4: return tile<4, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 3: return tile<3, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 2: return tile<2, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    default: return tile<1, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
  }
}

}  // namespace

void gemm_avx2(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
               const float* bias, Act act, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const int64_t panels = (N + kNR - 1) / kNR;
  // K == 0 still runs one pass so C = act(bias).
  for (int64_t k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kKC) {
    const int64_t kc = lmin(kKC, K - k0);
    const bool first = k0 == 0, last = k0 + kKC >= K;
    for (int64_t m0 = 0; m0 < M; m0 += kMC) {
      const int64_t mc = lmin(kMC, M - m0);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t n0 = p * kNR, nr = lmin(kNR, N - n0);
        const float* bp = Bp + p * K * kNR + k0 * kNR;
        const float* bb = bias ? bias + n0 : nullptr;
        for (int64_t i = 0; i < mc; i += kMR)
          (nr > 8 ? run_tile<2> : run_tile<1>)(lmin(kMR, mc - i), A + (m0 + i) * lda + k0, lda,
                                                 bp, kc, C + (m0 + i) * ldc + n0, ldc, nr, bb,
                                                 first, last, act);
      }
    }
    if (K == 0) break;
  }
}

}  // namespace dpn::kernels
