// AVX2+FMA GEMM: 6×16 register tile (12 ymm accumulators; 1-2 rows: panels side by side), B packed in
// 16-wide panels, A read in place (row-major, broadcast from memory; measured faster here than packing
// it). Compiled with -mavx2 -mfma; only called after the runtime check (cpu::available(Isa::Avx2)). See
// isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/blocking.h"
#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

constexpr int64_t kNR = 16;
constexpr int64_t kMR = 6;
// Block sizes kKC × kMC from the CPU's caches (kernels/blocking.h). Large K blocks pay: C is
// loaded and stored once per K block (kKC 768 against 256 took the Kronecker GEMM at criteo/prod
// shapes from 78% to 86% of the FMA peak on Zen 4, with the rows-outer order below).
// Packed B up to this size runs rows outer (see gemm_avx2 below).
constexpr int64_t kRowsOuterBytes = int64_t(8) << 20;

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
    bp += NC == 2 ? kNR : 8;  // NC == 1: a narrow last panel (gemm.h narrow_tail), 8 wide
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
      c0[i] = _mm256_add_ps(_mm256_max_ps(z, c0[i]), z);  // relu() of act.h: NaN stays NaN
      if constexpr (NC == 2) c1[i] = _mm256_add_ps(_mm256_max_ps(z, c1[i]), z);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    _mm256_maskstore_ps(C + i * ldc, m0, c0[i]);
    if constexpr (NC == 2) _mm256_maskstore_ps(C + i * ldc + 8, m1, c1[i]);
  }
}

template <int NC>
void run_tile(int64_t mr, const float* ap, int64_t lda, const float* bp, int64_t kc, float* C,
              int64_t ldc, int64_t nr, const float* bias, bool first, bool last, Act act) {
  switch (mr) {
    case 6: return tile<6, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 5: return tile<5, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 4: return tile<4, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 3: return tile<3, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 2: return tile<2, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    default: return tile<1, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
  }
}

// One or two rows (batch 1): the 6×16 tile would keep 2·M accumulator chains, latency-bound at
// 4-cycle FMAs. This tile runs P panels side by side (2·M·P chains, at most 8); the last panel may
// be partial (packed panels are zero-padded: only C and bias are masked). Same k order per output,
// so results equal tile()'s bit for bit. With H = 1 the last panel has at most 8 columns and is
// packed 8 wide (gemm.h narrow_tail): one vector per k. `b0` is the group's first panel; rows from
// k0 on are read.
template <int MR, int P, int H>
void tile_wide(const float* ap, int64_t lda, const float* b0, int64_t K, int64_t k0, int64_t kc,
               float* C, int64_t ldc, int64_t nlast, const float* bias, bool first, bool last, Act act) {
  constexpr int NV = 2 * P - H;                       // 8-float vectors per k
  const float* bp = b0 + k0 * kNR;                    // full panels
  const float* bn = b0 + (P - 1) * K * kNR + k0 * 8;  // the narrow last panel (H = 1)
  __m256i mk[NV];
  __m256 c[MR][NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    const int64_t col = (j / 2) * kNR + (j % 2) * 8;
    mk[j] = j / 2 == P - 1 ? mask8(nlast - (j % 2) * 8) : mask8(8);
    const __m256 b = first && bias ? _mm256_maskload_ps(bias + col, mk[j]) : _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int i = 0; i < MR; ++i) c[i][j] = first ? b : _mm256_maskload_ps(C + i * ldc + col, mk[j]);
  }
  for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 2
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + i * lda);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j)
        c[i][j] = _mm256_fmadd_ps(
            a, _mm256_loadu_ps(H && j == NV - 1 ? bn : bp + (j / 2) * K * kNR + (j % 2) * 8), c[i][j]);
    }
    bp += kNR;
    bn += 8;
    ++ap;
  }
#pragma GCC unroll 2
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      __m256 v = c[i][j];
      if (last && act == Act::Sigmoid) v = vsigmoid(v);
      if (last && act == Act::Tanh) v = vtanh(v);
      if (last && act == Act::Relu)
        v = _mm256_add_ps(_mm256_max_ps(_mm256_setzero_ps(), v), _mm256_setzero_ps());
      _mm256_maskstore_ps(C + i * ldc + (j / 2) * kNR + (j % 2) * 8, mk[j], v);
    }
}

// Every panel of a block of mr <= 2 rows: up to 4 panels at a time for one row, 2 for two, in
// groups of even size (a lone last panel would be latency-bound).
template <int MR, int P>
void run_wide_h(const float* ap, int64_t lda, const float* b0, int64_t K, int64_t k0, int64_t kc,
                float* C, int64_t ldc, int64_t nlast, const float* bias, bool first, bool last,
                Act act) {
  if (nlast <= 8)
    return tile_wide<MR, P, 1>(ap, lda, b0, K, k0, kc, C, ldc, nlast, bias, first, last, act);
  tile_wide<MR, P, 0>(ap, lda, b0, K, k0, kc, C, ldc, nlast, bias, first, last, act);
}

void run_wide(int64_t mr, const float* ap, int64_t lda, const float* Bp, int64_t K, int64_t k0,
              int64_t kc, float* C, int64_t ldc, int64_t N, const float* bias, bool first, bool last,
              Act act) {
  const int64_t panels = (N + kNR - 1) / kNR, step = mr == 1 ? 4 : 2;
  const int64_t groups = (panels + step - 1) / step;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t q = panels * g / groups, n = panels * (g + 1) / groups - q;
    const int64_t nlast = lmin(kNR, N - (q + n - 1) * kNR);
    const float* b = Bp + q * K * kNR;
    float* c = C + q * kNR;
    const float* bb = bias ? bias + q * kNR : nullptr;
    if (mr == 2 && n == 2)
      run_wide_h<2, 2>(ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
    else if (mr == 2)
      run_wide_h<2, 1>(ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
    else if (n == 4)
      run_wide_h<1, 4>(ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
    else if (n == 3)
      run_wide_h<1, 3>(ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
    else if (n == 2)
      run_wide_h<1, 2>(ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
    else
      run_wide_h<1, 1>(ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
  }
}

}  // namespace

void gemm(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
          const float* bias, Act act, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  // One or two rows: accumulators stay in registers for all of K, so each panel group is read
  // start to end as one stream per panel (K blocks hopped between all the panels).
  if (M <= 2 && K > 0) return run_wide(M, A, lda, Bp, K, 0, K, C, ldc, N, bias, true, true, act);
  const GemmBlocks& blocks = gemm_blocks(BlockFamily::F32Avx2);
  const int64_t kKC = blocks.kc, kMC = blocks.mc;
  const int64_t panels = (N + kNR - 1) / kNR;
  // One m-block × K-block: every panel, in 6-row tiles (or the wide tile for a 1-2 row m tail).
  auto step = [&](int64_t m0, int64_t k0) {
    const int64_t mc = lmin(kMC, M - m0), kc = lmin(kKC, K - k0);
    const bool first = k0 == 0, last = k0 + kKC >= K;
    if (mc <= 2)
      return run_wide(mc, A + m0 * lda + k0, lda, Bp, K, k0, kc, C + m0 * ldc, ldc, N, bias, first, last,
                      act);
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * kNR, nr = lmin(kNR, N - n0);
      const float* bp = Bp + p * K * kNR + k0 * (nr > 8 ? kNR : 8);  // narrow tail: 8 wide
      const float* bb = bias ? bias + n0 : nullptr;
      for (int64_t i = 0; i < mc; i += kMR)
        (nr > 8 ? run_tile<2> : run_tile<1>)(lmin(kMR, mc - i), A + (m0 + i) * lda + k0, lda, bp, kc,
                                             C + (m0 + i) * ldc + n0, ldc, nr, bb, first, last, act);
    }
  };
  const int64_t kend = K > 0 ? K : 1;  // K == 0 still runs one pass so C = act(bias)
  if (K * panels * kNR * int64_t(sizeof(float)) <= kRowsOuterBytes) {
    // Rows outer: an m-block's C stays in L2 across its K blocks; B stays in L3 (as on AVX-512).
    for (int64_t m0 = 0; m0 < M; m0 += kMC)
      for (int64_t k0 = 0; k0 < kend; k0 += kKC) step(m0, k0);
  } else {
    for (int64_t k0 = 0; k0 < kend; k0 += kKC)
      for (int64_t m0 = 0; m0 < M; m0 += kMC) step(m0, k0);
  }
}

}  // namespace dpn::kernels::avx2
