// AVX2+FMA GEMM: 6×16 register tile (12 ymm accumulators), B packed in 16-wide panels, A read in
// place (row-major, broadcast from memory; measured faster here than packing it). Compiled with
// -mavx2 -mfma; only called after the runtime check (cpu::available(Isa::Avx2)). See gemm_isa.h
// for what this file must not use.
#include <immintrin.h>

#include "kernels/gemm_isa.h"
#include "kernels/vecmath_avx2.h"

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
