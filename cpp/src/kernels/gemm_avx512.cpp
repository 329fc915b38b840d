// AVX-512 GEMM: 12×32 register tile (24 zmm accumulators), B packed in 32-wide panels, A packed
// per (MC×KC) block into 12-row micro-panels so the inner loop broadcasts from one stream.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma; only called after the runtime
// check (cpu::available(Isa::Avx512)). See gemm_isa.h for what this file must not use.
#include <immintrin.h>

#include "kernels/gemm_isa.h"

namespace dpn::kernels {

namespace {

constexpr int64_t kNR = 32;
constexpr int64_t kMR = 12;
#ifndef DPN_AVX512_KC
#define DPN_AVX512_KC 256
#endif
#ifndef DPN_AVX512_MC
#define DPN_AVX512_MC 96
#endif
constexpr int64_t kKC = DPN_AVX512_KC;
constexpr int64_t kMC = DPN_AVX512_MC;  // multiple of kMR

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// Pack rows [0, mc) × cols [0, kc) of A into micro-panels of kMR rows: ap[p][k][i].
void pack_a(const float* A, int64_t lda, int64_t mc, int64_t kc, float* ap) {
  for (int64_t i0 = 0; i0 < mc; i0 += kMR) {
    const int64_t mr = lmin(kMR, mc - i0);
    float* d = ap + i0 * kc;
    for (int64_t i = 0; i < mr; ++i) {
      const float* s = A + (i0 + i) * lda;
      for (int64_t k = 0; k < kc; ++k) d[k * kMR + i] = s[k];
    }
  }
}

template <int MR>
void tile(const float* ap, const float* bp, int64_t kc, float* C, int64_t ldc, int64_t nr,
          const float* bias, bool first, bool last, Act act) {
  const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
  __m512 c0[MR], c1[MR];
  if (first) {
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = b0;
      c1[i] = b1;
    }
  } else {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm512_maskz_loadu_ps(m0, C + i * ldc);
      c1[i] = _mm512_maskz_loadu_ps(m1, C + i * ldc + 16);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
    bp += kNR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
    }
    ap += kMR;
  }
  if (last && act == Act::Relu) {
    const __m512 z = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm512_maskz_max_ps(__mmask16(0xFFFF), c0[i], z);
      c1[i] = _mm512_maskz_max_ps(__mmask16(0xFFFF), c1[i], z);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(C + i * ldc, m0, c0[i]);
    _mm512_mask_storeu_ps(C + i * ldc + 16, m1, c1[i]);
  }
  if (last && (act == Act::Sigmoid || act == Act::Tanh))
    for (int i = 0; i < MR; ++i) act_inplace(C + i * ldc, nr, act);
}

void run_tile(int64_t mr, const float* ap, const float* bp, int64_t kc, float* C, int64_t ldc,
              int64_t nr, const float* bias, bool first, bool last, Act act) {
  switch (mr) {
    case 12: return tile<12>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 11: return tile<11>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 10: return tile<10>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 9: return tile<9>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 8: return tile<8>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 7: return tile<7>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 6: return tile<6>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 5: return tile<5>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 4: return tile<4>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 3: return tile<3>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    case 2: return tile<2>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
    default: return tile<1>(ap, bp, kc, C, ldc, nr, bias, first, last, act);
  }
}

}  // namespace

void gemm_avx512(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
                 const float* bias, Act act, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const int64_t panels = (N + kNR - 1) / kNR;
  float* ap = thread_scratch(size_t(kMC * kKC));
  // K == 0 still runs one pass so C = act(bias).
  for (int64_t k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kKC) {
    const int64_t kc = lmin(kKC, K - k0);
    const bool first = k0 == 0, last = k0 + kKC >= K;
    for (int64_t m0 = 0; m0 < M; m0 += kMC) {
      const int64_t mc = lmin(kMC, M - m0);
      pack_a(A + m0 * lda + k0, lda, mc, kc, ap);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t n0 = p * kNR, nr = lmin(kNR, N - n0);
        const float* bp = Bp + p * K * kNR + k0 * kNR;
        const float* bb = bias ? bias + n0 : nullptr;
        for (int64_t i = 0; i < mc; i += kMR)
          run_tile(lmin(kMR, mc - i), ap + i * kc, bp, kc, C + (m0 + i) * ldc + n0, ldc, nr, bb,
                   first, last, act);
      }
    }
    if (K == 0) break;
  }
}

}  // namespace dpn::kernels
