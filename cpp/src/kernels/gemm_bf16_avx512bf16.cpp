// AVX512_BF16 GEMMs over bfloat16 weights (gemm.h, "bfloat16 packed layout"): the avx512 GEMM's
// blocking and 12×32 register tile, one vdpbf16ps per 16 columns and k-pair (two products per
// lane: twice the float32 FMA's multiplies, half its weight bytes). The left operand is rounded to
// bfloat16 (vcvtne2ps2bf16, nearest even) as each kMC×kKC block is packed, row-major, so a k-pair
// of a row is one 32-bit broadcast. The Kronecker GEMM writes its [x, h1·x, …, hl·x, h] blocks in
// bfloat16 straight away (each s·x rounded once, from float32). Accumulation and the bias +
// activation epilogue are float32. The instructions flush bfloat16 subnormals (|v| < 2^-126) to 0.
// Reference twins: gemm_bf16_ref.cpp.
// Compiled with the avx512 flags plus -mavx512bf16; only called after the runtime check
// (cpu::available(Isa::Avx512Bf16)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/blocking.h"
#include "kernels/bf16_block_avx512.h"
#include "kernels/isa_kernels.h"
#include "runtime/thread_scratch.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512bf16 {

namespace {

constexpr int64_t kNR = 32;
constexpr int64_t kMR = 12;
// k per block (even) and rows per block (a multiple of kMR) from the CPU's caches (kernels/blocking.h).
inline const GemmBlocks& blocks() { return gemm_blocks(BlockFamily::Bf16Avx512); }
constexpr int64_t kRowsOuterBytes = int64_t(8) << 20;

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// The k-pair q of a bfloat16 row, broadcast to every lane.
inline __m512bh pair(const uint16_t* row, int64_t q) {
  int v;
  __builtin_memcpy(&v, row + 2 * q, sizeof v);
  return (__m512bh)_mm512_set1_epi32(v);
}

// MR rows × P panels side by side (the last with `nlast` columns; packed narrow, 16 wide, when H),
// k-pairs [q0, q0 + qc) of a B of Kp pairs whose first panel is b0. A: bfloat16 rows of the block,
// pair q of row i at ap + i·lda + 2(q - q0).
template <int MR, int P, int H>
void tile(const uint16_t* ap, int64_t lda, const uint16_t* b0, int64_t Kp, int64_t q0, int64_t qc,
          float* C, int64_t ldc, int64_t nlast, const float* bias, bool first, bool last, Act act) {
  constexpr int NV = 2 * P - H;                                // 16-column vectors per k-pair
  const uint16_t* bp = b0 + q0 * kNR * 2;                      // full panels: a pair row is 64 values
  const uint16_t* bn = b0 + (P - 1) * Kp * kNR * 2 + q0 * 32;  // the narrow last panel (H = 1)
  __mmask16 mk[NV];
  __m512 c[MR][NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    const int64_t col = (j / 2) * kNR + (j % 2) * 16;
    mk[j] = j / 2 == P - 1 ? mask16(nlast - (j % 2) * 16) : __mmask16(0xFFFF);
    const __m512 b = first && bias ? _mm512_maskz_loadu_ps(mk[j], bias + col) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) c[i][j] = first ? b : _mm512_maskz_loadu_ps(mk[j], C + i * ldc + col);
  }
  for (int64_t q = 0; q < qc; ++q) {
    __m512bh b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      b[j] = (__m512bh)_mm512_loadu_si512(H && j == NV - 1 ? bn
                                                           : bp + (j / 2) * Kp * kNR * 2 + (j % 2) * 32);
    bp += kNR * 2;
    bn += 32;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512bh a = pair(ap + i * lda, q);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) c[i][j] = _mm512_dpbf16_ps(c[i][j], a, b[j]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const __m512 v = last ? vact(c[i][j], act) : c[i][j];
      _mm512_mask_storeu_ps(C + i * ldc + (j / 2) * kNR + (j % 2) * 16, mk[j], v);
    }
}

struct Args {
  const uint16_t* a;
  int64_t lda;
  const uint16_t* b0;  // first panel of the group
  int64_t Kp, q0, qc;
  float* C;
  int64_t ldc, nlast;
  const float* bias;
  bool first, last;
  Act act;
};

template <int MR, int P>
void run_p(const Args& g) {
  if (g.nlast <= 16)
    return tile<MR, P, 1>(g.a, g.lda, g.b0, g.Kp, g.q0, g.qc, g.C, g.ldc, g.nlast, g.bias, g.first,
                          g.last, g.act);
  tile<MR, P, 0>(g.a, g.lda, g.b0, g.Kp, g.q0, g.qc, g.C, g.ldc, g.nlast, g.bias, g.first, g.last,
                 g.act);
}

// One panel, 1..12 rows (the blocked path).
void run_rows(int64_t mr, const Args& g) {
  switch (mr) {
    case 12: return run_p<12, 1>(g);
    case 11: return run_p<11, 1>(g);
    case 10: return run_p<10, 1>(g);
    case 9: return run_p<9, 1>(g);
    case 8: return run_p<8, 1>(g);
    case 7: return run_p<7, 1>(g);
    case 6: return run_p<6, 1>(g);
    case 5: return run_p<5, 1>(g);
    case 4: return run_p<4, 1>(g);
    case 3: return run_p<3, 1>(g);
    case 2: return run_p<2, 1>(g);
    default: return run_p<1, 1>(g);
  }
}

template <int MR>
void run_panels(int64_t n, const Args& g) {
  switch (n) {
    case 4: return run_p<MR, 4>(g);
    case 3: return run_p<MR, 3>(g);
    case 2: return run_p<MR, 2>(g);
    default: return run_p<MR, 1>(g);
  }
}

// Every panel for mr <= 3 rows (batch 1 above all): as the avx512 GEMM, several panels side by
// side so enough accumulator chains hide the dot product's latency, in groups of even size.
void run_wide(int64_t mr, const uint16_t* a, int64_t lda, const uint16_t* Bh, int64_t Kp, int64_t q0,
              int64_t qc, float* C, int64_t ldc, int64_t N, const float* bias, bool first, bool last,
              Act act) {
  const int64_t panels = (N + kNR - 1) / kNR, step = mr == 1 ? 4 : 2;
  const int64_t groups = (panels + step - 1) / step;
  for (int64_t gi = 0; gi < groups; ++gi) {
    const int64_t q = panels * gi / groups, n = panels * (gi + 1) / groups - q;
    Args g{a, lda, Bh + q * Kp * kNR * 2, Kp, q0, qc, C + q * kNR, ldc, 0, nullptr, first, last, act};
    g.nlast = lmin(kNR, N - (q + n - 1) * kNR);
    g.bias = bias ? bias + q * kNR : nullptr;
    if (mr == 1)
      run_panels<1>(n, g);
    else if (mr == 2)
      run_panels<2>(n, g);
    else
      run_panels<3>(n, g);
  }
}

// The blocked driver (as avx512's). block(m0, mc, k0, kc, &lda) returns rows [m0, m0+mc) ×
// columns [k0, k0+kc) of the left operand in bfloat16, each row padded to whole pairs with 0.
template <class BlockA>
void drive(int64_t M, int64_t K, const uint16_t* Bh, int64_t N, const float* bias, Act act, float* C,
           int64_t ldc, const BlockA& block) {
  if (M <= 0 || N <= 0) return;
  const int64_t Kp = (K + 1) / 2;
  if (M <= 3 && K > 0) {
    int64_t la = 0;
    const uint16_t* a = block(0, M, 0, K, &la);
    return run_wide(M, a, la, Bh, Kp, 0, Kp, C, ldc, N, bias, true, true, act);
  }
  const int64_t kKC = blocks().kc, kMC = blocks().mc;
  const int64_t panels = (N + kNR - 1) / kNR;
  auto step = [&](int64_t m0, int64_t k0) {
    const int64_t mc = lmin(kMC, M - m0), kc = lmin(kKC, K - k0), q0 = k0 / 2, qc = (kc + 1) / 2;
    const bool first = k0 == 0, last = k0 + kKC >= K;
    int64_t la = 0;
    const uint16_t* a = block(m0, mc, k0, kc, &la);
    if (mc <= 3)
      return run_wide(mc, a, la, Bh, Kp, q0, qc, C + m0 * ldc, ldc, N, bias, first, last, act);
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * kNR;
      for (int64_t i = 0; i < mc; i += kMR) {
        Args g{a + i * la, la, Bh + p * Kp * kNR * 2, Kp, q0, qc, C, ldc, 0, nullptr, first, last, act};
        g.C = C + (m0 + i) * ldc + n0;
        g.nlast = lmin(kNR, N - n0);
        g.bias = bias ? bias + n0 : nullptr;
        run_rows(lmin(kMR, mc - i), g);
      }
    }
  };
  const int64_t kend = K > 0 ? K : 1;  // K == 0 still runs one pass so C = act(bias)
  if (Kp * 2 * panels * kNR * int64_t(sizeof(uint16_t)) <= kRowsOuterBytes) {
    for (int64_t m0 = 0; m0 < M; m0 += kMC)
      for (int64_t k0 = 0; k0 < kend; k0 += kKC) step(m0, k0);
  } else {
    for (int64_t k0 = 0; k0 < kend; k0 += kKC)
      for (int64_t m0 = 0; m0 < M; m0 += kMC) step(m0, k0);
  }
}

// Scratch (in floats) for blocks of `rows` rows of `cols` bfloat16 values padded to pairs.
inline size_t scratch_for(int64_t rows, int64_t cols) { return size_t(rows * ((cols + 1) / 2) + 1); }

}  // namespace

void gemm_bf16(const float* A, int64_t lda, int64_t M, int64_t K, const uint16_t* Bh, int64_t N,
               const float* bias, Act act, float* C, int64_t ldc) {
  uint16_t* buf = reinterpret_cast<uint16_t*>(
      runtime::thread_scratch(M <= 3 ? scratch_for(M, K) : scratch_for(blocks().mc, blocks().kc)));
  drive(M, K, Bh, N, bias, act, C, ldc,
        [&](int64_t m0, int64_t mc, int64_t k0, int64_t kc, int64_t* la) {
          const int64_t w = (kc + 1) & ~int64_t(1);
          *la = w;
          rows_block_bf16(A, lda, m0, mc, k0, kc, buf, w);
          return static_cast<const uint16_t*>(buf);
        });
}

void gemm_kron_bf16(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                    bool with_h, int64_t M, const uint16_t* Bh, int64_t N, const float* bias, Act act,
                    float* C, int64_t ldc) {
  const int64_t Kx = (l + 1) * m, K = Kx + (with_h ? l : 0);
  uint16_t* buf = reinterpret_cast<uint16_t*>(
      runtime::thread_scratch(M <= 3 ? scratch_for(M, K) : scratch_for(blocks().mc, blocks().kc)));
  drive(M, K, Bh, N, bias, act, C, ldc,
        [&](int64_t m0, int64_t mc, int64_t k0, int64_t kc, int64_t* la) {
          const int64_t w = (kc + 1) & ~int64_t(1);
          *la = w;
          kron_block_bf16(x, ldx, m, h, ldh, Kx, m0, mc, k0, kc, buf, w);
          return static_cast<const uint16_t*>(buf);
        });
}

}  // namespace dpn::kernels::avx512bf16
