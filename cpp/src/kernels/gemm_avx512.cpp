// AVX-512 GEMM: 12×32 register tile (24 zmm accumulators), B packed in 32-wide panels; A read in
// place (row-major, broadcast straight from memory — measured faster here than packing A, which
// costs about as much as the FMAs it feeds when N has few panels). K blocked by kKC so a B panel
// slice (kKC×32 floats) stays in L1/L2 across the M tiles, M by kMC (both from kernels/blocking.h).
// The Kronecker GEMM of a dynamic layer builds its left operand [x, h1·x, …, hl·x, h] block by block
// (kMC×kKC, row-major, L2 resident) instead of materializing the whole panel.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma; only called after the runtime
// check (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/blocking.h"
#include "kernels/isa_kernels.h"
#include "runtime/thread_scratch.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

constexpr int64_t kNR = 32;
constexpr int64_t kMR = 12;
// Block sizes kKC × kMC come from the CPU's caches (kernels/blocking.h): a kKC×32 slice of B
// streams from L1/L2 per 12-row tile, C is loaded and stored once per K block.
// Packed B up to this size runs rows outer (below).
constexpr int64_t kRowsOuterBytes = int64_t(8) << 20;

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// NC: vector columns computed (2 = full panel; 1 when the panel edge has at most half a panel).
// A is read in place, row-major: row i of the tile at a + i*lda.
template <int MR, int NC>
void tile(const float* ap, int64_t lda, const float* bp, int64_t kc, float* C, int64_t ldc, int64_t nr,
          const float* bias, bool first, bool last, Act act) {
  const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
  __m512 c0[MR], c1[NC == 2 ? MR : 1];
  if (first) {
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = b0;
      if constexpr (NC == 2) c1[i] = b1;
    }
  } else {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm512_maskz_loadu_ps(m0, C + i * ldc);
      if constexpr (NC == 2) c1[i] = _mm512_maskz_loadu_ps(m1, C + i * ldc + 16);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(bp);
    __m512 b1 = b0;
    if constexpr (NC == 2) b1 = _mm512_loadu_ps(bp + 16);
    bp += NC == 2 ? kNR : 16;  // NC == 1: a narrow last panel (gemm.h narrow_tail), 16 wide
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i * lda]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      if constexpr (NC == 2) c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
    }
    ++ap;
  }
  if (last && act == Act::Sigmoid) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = vsigmoid(c0[i]);
      if constexpr (NC == 2) c1[i] = vsigmoid(c1[i]);
    }
  } else if (last && act == Act::Tanh) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = vtanh(c0[i]);
      if constexpr (NC == 2) c1[i] = vtanh(c1[i]);
    }
  }
  if (last && act == Act::Relu) {
    const __m512 z = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      c0[i] = _mm512_add_ps(_mm512_max_ps(z, c0[i]), z);  // relu() of act.h: NaN stays NaN
      if constexpr (NC == 2) c1[i] = _mm512_add_ps(_mm512_max_ps(z, c1[i]), z);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(C + i * ldc, m0, c0[i]);
    if constexpr (NC == 2) _mm512_mask_storeu_ps(C + i * ldc + 16, m1, c1[i]);
  }
}

template <int NC>
void run_tile(int64_t mr, const float* ap, int64_t lda, const float* bp, int64_t kc, float* C,
              int64_t ldc, int64_t nr, const float* bias, bool first, bool last, Act act) {
  switch (mr) {
    case 12: return tile<12, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 11: return tile<11, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 10: return tile<10, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 9: return tile<9, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 8: return tile<8, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 7: return tile<7, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 6: return tile<6, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 5: return tile<5, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 4: return tile<4, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 3: return tile<3, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    case 2: return tile<2, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
    default: return tile<1, NC>(ap, lda, bp, kc, C, ldc, nr, bias, first, last, act);
  }
}

// Few rows (M <= 3, batch 1 above all): a 12×32 tile would keep only 2·M accumulator chains, and
// at 4-cycle FMA latency that caps the weight stream at ~32 B/cycle, below what the caches deliver.
// This tile runs P panels side by side (2·M·P independent chains); the last one may be partial
// (`nlast` columns: packed panels are zero-padded, so only C and bias need masks). With H = 1 the
// last panel has at most 16 columns and is packed 16 wide (gemm.h narrow_tail): one vector per k.
// `b0` is the first panel of the group, rows from k0 on are read. Each output still sums k in the
// same order, so results equal tile()'s bit for bit.
template <int MR, int P, int H>
void tile_wide(const float* ap, int64_t lda, const float* b0, int64_t K, int64_t k0, int64_t kc,
               float* C, int64_t ldc, int64_t nlast, const float* bias, bool first, bool last, Act act) {
  constexpr int NV = 2 * P - H;                        // 16-float vectors per k
  const float* bp = b0 + k0 * kNR;                     // full panels
  const float* bn = b0 + (P - 1) * K * kNR + k0 * 16;  // the narrow last panel (H = 1)
  __mmask16 mk[NV];
  __m512 c[MR][NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    const int64_t col = (j / 2) * kNR + (j % 2) * 16;
    mk[j] = j / 2 == P - 1 ? mask16(nlast - (j % 2) * 16) : __mmask16(0xFFFF);
    const __m512 b = first && bias ? _mm512_maskz_loadu_ps(mk[j], bias + col) : _mm512_setzero_ps();
#pragma GCC unroll 3
    for (int i = 0; i < MR; ++i) c[i][j] = first ? b : _mm512_maskz_loadu_ps(mk[j], C + i * ldc + col);
  }
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      b[j] = _mm512_loadu_ps(H && j == NV - 1 ? bn : bp + (j / 2) * K * kNR + (j % 2) * 16);
    bp += kNR;
    bn += 16;
#pragma GCC unroll 3
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i * lda]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) c[i][j] = _mm512_fmadd_ps(a, b[j], c[i][j]);
    }
    ++ap;
  }
#pragma GCC unroll 3
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const __m512 v = last ? vact(c[i][j], act) : c[i][j];
      _mm512_mask_storeu_ps(C + i * ldc + (j / 2) * kNR + (j % 2) * 16, mk[j], v);
    }
}

template <int MR, int P>
void run_wide_h(const float* ap, int64_t lda, const float* b0, int64_t K, int64_t k0, int64_t kc,
                float* C, int64_t ldc, int64_t nlast, const float* bias, bool first, bool last,
                Act act) {
  if (nlast <= 16)
    return tile_wide<MR, P, 1>(ap, lda, b0, K, k0, kc, C, ldc, nlast, bias, first, last, act);
  tile_wide<MR, P, 0>(ap, lda, b0, K, k0, kc, C, ldc, nlast, bias, first, last, act);
}

template <int MR>
void run_wide_n(int64_t n, const float* ap, int64_t lda, const float* b0, int64_t K, int64_t k0,
                int64_t kc, float* C, int64_t ldc, int64_t nlast, const float* bias, bool first,
                bool last, Act act) {
  switch (n) {
    case 4: return run_wide_h<MR, 4>(ap, lda, b0, K, k0, kc, C, ldc, nlast, bias, first, last, act);
    case 3: return run_wide_h<MR, 3>(ap, lda, b0, K, k0, kc, C, ldc, nlast, bias, first, last, act);
    case 2: return run_wide_h<MR, 2>(ap, lda, b0, K, k0, kc, C, ldc, nlast, bias, first, last, act);
    default: return run_wide_h<MR, 1>(ap, lda, b0, K, k0, kc, C, ldc, nlast, bias, first, last, act);
  }
}

// Every panel of a block of mr <= 3 rows: up to 4 panels at a time for one row, 2 for two or
// three, in groups of even size (13 panels as 3+3+3+4, not 4+4+4+1: a lone half panel would be one
// FMA chain, latency-bound).
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
    if (mr == 1)
      run_wide_n<1>(n, ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
    else if (mr == 2)
      run_wide_n<2>(n, ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
    else
      run_wide_n<3>(n, ap, lda, b, K, k0, kc, c, ldc, nlast, bb, first, last, act);
  }
}

// The blocked driver. block(m0, mc, k0, kc, &lda_out) returns rows [m0, m0+mc) × columns
// [k0, k0+kc) of A (row-major, leading dimension *lda_out).
template <class BlockA>
void drive(int64_t M, int64_t K, const float* Bp, int64_t N, const float* bias, Act act, float* C,
           int64_t ldc, const BlockA& block) {
  if (M <= 0 || N <= 0) return;
  if (M <= 3 && K > 0) {
    // Few rows: the accumulators live in registers for the whole of K, so K is not blocked and
    // each group of panels is read start to end, one sequential stream per panel (K blocks made
    // the weight stream hop between all the panels every kKC rows).
    int64_t la = 0;
    const float* a = block(0, M, 0, K, &la);
    return run_wide(M, a, la, Bp, K, 0, K, C, ldc, N, bias, true, true, act);
  }
  const GemmBlocks& blocks = gemm_blocks(BlockFamily::F32Avx512);
  const int64_t kKC = blocks.kc, kMC = blocks.mc;
  const int64_t panels = (N + kNR - 1) / kNR;
  // One m-block × K-block: every panel, in 12-row tiles (or the few-rows tile for an m tail).
  auto step = [&](int64_t m0, int64_t k0) {
    const int64_t mc = lmin(kMC, M - m0), kc = lmin(kKC, K - k0);
    const bool first = k0 == 0, last = k0 + kKC >= K;
    int64_t la = 0;
    const float* a = block(m0, mc, k0, kc, &la);
    if (mc <= 3) return run_wide(mc, a, la, Bp, K, k0, kc, C + m0 * ldc, ldc, N, bias, first, last, act);
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * kNR, nr = lmin(kNR, N - n0);
      const float* bp = Bp + p * K * kNR + k0 * (nr > 16 ? kNR : 16);  // narrow tail: 16 wide
      const float* bb = bias ? bias + n0 : nullptr;
      for (int64_t i = 0; i < mc; i += kMR)
        (nr > 16 ? run_tile<2> : run_tile<1>)(lmin(kMR, mc - i), a + i * la, la, bp, kc,
                                              C + (m0 + i) * ldc + n0, ldc, nr, bb, first, last, act);
    }
  };
  const int64_t kend = K > 0 ? K : 1;  // K == 0 still runs one pass so C = act(bias)
  if (K * panels * kNR * int64_t(sizeof(float)) <= kRowsOuterBytes) {
    // Rows outer: an m-block's C stays in L2 across its K blocks while B (small enough to stay in
    // L3) streams through once per m-block.
    for (int64_t m0 = 0; m0 < M; m0 += kMC)
      for (int64_t k0 = 0; k0 < kend; k0 += kKC) step(m0, k0);
  } else {
    // K outer: a large B (prod's first layer, 31 MiB) is read from memory once per call.
    for (int64_t k0 = 0; k0 < kend; k0 += kKC)
      for (int64_t m0 = 0; m0 < M; m0 += kMC) step(m0, k0);
  }
}

// d[t] = s·x[t] (s = 1 copies exactly). Written out: GCC left the plain loop scalar here, and building
// the [x, h·x] blocks then cost a quarter of the FMA time of a narrow (2-panel) layer.
inline void scale_copy(float* d, const float* x, float s, int64_t n) {
  const __m512 v = _mm512_set1_ps(s);
  int64_t t = 0;
  for (; t + 16 <= n; t += 16) _mm512_storeu_ps(d + t, _mm512_mul_ps(v, _mm512_loadu_ps(x + t)));
  if (t < n) {
    const __mmask16 k = mask16(n - t);
    _mm512_mask_storeu_ps(d + t, k, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, x + t)));
  }
}

}  // namespace

void gemm(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
          const float* bias, Act act, float* C, int64_t ldc) {
  drive(M, K, Bp, N, bias, act, C, ldc, [&](int64_t m0, int64_t, int64_t k0, int64_t, int64_t* la) {
    *la = lda;
    return A + m0 * lda + k0;
  });
}

// The same products s·x[i] as kron_panel, so results match the unfused path bit for bit.
void gemm_kron(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
               bool with_h, int64_t M, const float* Bp, int64_t N, const float* bias, Act act, float* C,
               int64_t ldc) {
  const int64_t Kx = (l + 1) * m, K = Kx + (with_h ? l : 0);
  // A block is at most kMC × kKC, or up to 3 rows of all of K (drive's few-rows path).
  const GemmBlocks& blocks = gemm_blocks(BlockFamily::F32Avx512);
  float* buf = runtime::thread_scratch(size_t(M <= 3 ? lmin(M, 3) * K : blocks.mc * blocks.kc));
  drive(M, K, Bp, N, bias, act, C, ldc,
        [&](int64_t m0, int64_t mc, int64_t k0, int64_t kc, int64_t* la) {
          *la = kc;
          const int64_t end = k0 + kc;
          for (int64_t i = 0; i < mc; ++i) {
            const float* xb = x + (m0 + i) * ldx;
            const float* hb = h + (m0 + i) * ldh;
            float* d = buf + i * kc - k0;  // d[kk] for kk in [k0, end)
            int64_t kk = k0;
            while (kk < end && kk < Kx) {
              const int64_t seg = kk / m, off = kk - seg * m, n = lmin(m - off, end - kk);
              float* dd = d + kk;
              const float* xs = xb + off;
              scale_copy(dd, xs, seg == 0 ? 1.0f : hb[seg - 1], n);
              kk += n;
            }
            for (; kk < end; ++kk) d[kk] = hb[kk - Kx];
          }
          return static_cast<const float*>(buf);
        });
}

}  // namespace dpn::kernels::avx512
