// AMX-BF16 GEMMs over bfloat16 weights (gemm.h, "bfloat16 packed layout"), the same contract as the
// AVX512_BF16 ones (gemm_bf16_avx512bf16.cpp): the left operand rounded to bfloat16 (nearest even)
// as each block is built, exact products, float32 accumulation and epilogue, bfloat16 subnormals
// flushed to 0. One tdpbf16ps multiplies a 16×32 tile of A by a 16-pair × 16-column tile of B into
// a 16×16 float32 tile: 16 times the multiplies of a vdpbf16ps per instruction.
//
// Tiles (all 16 rows × 64 bytes): C in tmm0-3 (32 rows × 32 columns: one packed panel), A in
// tmm4-5 (rows 0-15, 16-31), B in tmm6-7 (columns 0-15, 16-31). The packed layout needs no
// repacking: a panel's pair row (32 columns × 2 bfloat16 = 128 bytes) holds the rows of both B
// tiles, so each is a strided load (a narrow last panel, 16 wide, has one). A block of kMC × kKC
// bfloat16 (256 KiB, L2) is built per K block (up to 16 rows: all of K, k_block below); each
// panel's kKC/2-pair slice (32 KiB) stays in L1 while the row tiles walk it. K tails: A columns past K
// are 0 in the block, and a last tile step with fewer than 16 pairs reads B from a zero-padded copy,
// never past the panel. Every row count runs the tiles (a batch of one pads its tile with zero rows), so
// a row's result never depends on the rows beside it: each output runs the same tile steps in the same
// order (C spilled to memory between K blocks and reloaded is exact, so the block size does not matter).
// Compiled with the avx512bf16 flags plus -mamx-tile -mamx-bf16; only called when
// cpu::available(Isa::Avx512Amx) (CPUID, XCR0 and the kernel's permission for the tile data).
// See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/bf16_block_avx512.h"
#include "kernels/amx_tiles.h"
#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"
#include "runtime/thread_scratch.h"

namespace dpn::kernels::avx512amx {

namespace {

constexpr int64_t kNR = 32;   // packed panel width (gemm.h kBf16Panel)
constexpr int64_t kTK = 32;   // k per tile step (16 pairs)
constexpr int64_t kKC = 512;  // k per block, a multiple of kTK
constexpr int64_t kMC = 256;  // rows per block, a multiple of 32
// A block rows are kPad bfloat16 longer than their tile steps: rows exactly 1 KiB apart (kKC = 512)
// made prod's first layer (x of 1536 floats) a quarter slower in the Kronecker GEMM.
constexpr int64_t kPad = 32;
constexpr int64_t kRowsOuterBytes = int64_t(8) << 20;
// Up to 16 rows (batch 1 above all) take all of K up to this in one block, so each panel's C passes
// through the tiles once instead of once per K block. A row's sums are the same either way: tiles
// spill to C and reload it exactly between K blocks, in the same tile steps.
constexpr int64_t kWholeK = 16384;

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// K per block for an M-row call, a multiple of kTK.
inline int64_t k_block(int64_t M, int64_t K) {
  return M <= 16 && K <= kWholeK ? (K + kTK - 1) / kTK * kTK : kKC;
}

// One 32-row (R = 2) or 16-row (R = 1) group × one panel of Q 16-column tiles, `steps` tile steps
// of A (stride sa bytes) and B (stride sb bytes); the last step's B from `tail` (stride sb) when set.
template <int R, int Q>
void accumulate(const uint16_t* a, int64_t sa, const uint16_t* b, int64_t sb, int64_t steps,
                const uint16_t* tail) {
  for (int64_t s = 0; s < steps; ++s) {
    const uint16_t* bs = tail && s == steps - 1 ? tail : b + s * 8 * sb;  // 16 pair rows of sb bytes
    _tile_loadd(4, a + s * kTK, sa);
    if constexpr (R == 2) _tile_loadd(5, a + 16 * (sa / 2) + s * kTK, sa);
    _tile_loadd(6, bs, sb);
    if constexpr (Q == 2) _tile_loadd(7, bs + 32, sb);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (Q == 2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (R == 2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (R == 2 && Q == 2) _tile_dpbf16ps(3, 5, 7);
  }
}

struct Group {
  const uint16_t* a;  // first row of the group in the A block, leading dimension la
  int64_t la;
  const uint16_t* b;  // the panel's first pair row of this K block
  int64_t sb, steps;  // pair-row stride in bytes (128, or 64 narrow); tile steps
  const uint16_t* tail;
  float* C;
  int64_t ldc, rows, cols;  // the group's valid rows (<= 32) and columns (<= 32)
  const float* bias;
  bool first, last;
  Act act;
};

template <int R, int Q>
void run_group(const Group& g) {
  alignas(64) float cb[32 * 32];  // the group's C when it is not a whole tile block of C
  const bool whole = g.rows == 16 * R && g.cols == 16 * Q;
  float* c = whole ? g.C : cb;
  const int64_t sc = whole ? g.ldc * 4 : kNR * 4;
  if (g.first) {
    amx_zero_c<R, Q>();
  } else {
    if (!whole) {
      for (int64_t i = 0; i < 16 * R; ++i)
        for (int64_t j = 0; j < 16 * Q; j += 16)
          _mm512_store_ps(cb + i * kNR + j,
                          i < g.rows ? _mm512_maskz_loadu_ps(mask16(g.cols - j), g.C + i * g.ldc + j)
                                     : _mm512_setzero_ps());
    }
    amx_load_c<R, Q>(c, sc);
  }
  accumulate<R, Q>(g.a, g.la * 2, g.b, g.sb, g.steps, g.tail);
  amx_store_c<R, Q>(c, sc);
  if (!g.last && whole) return;
  // Copy out an edge group; on the last K block add the bias and apply the activation.
  for (int64_t i = 0; i < g.rows; ++i)
    for (int64_t j = 0; j < g.cols; j += 16) {
      const __mmask16 k = mask16(g.cols - j);
      __m512 v = whole ? _mm512_loadu_ps(g.C + i * g.ldc + j) : _mm512_load_ps(cb + i * kNR + j);
      if (g.last) {
        if (g.bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, g.bias + j));
        v = vact(v, g.act);
      }
      _mm512_mask_storeu_ps(g.C + i * g.ldc + j, k, v);
    }
}

// The blocked driver (M, K, N > 0). block(m0, mc, k0, kc, la) fills the A block: rows
// [m0, m0+mc) × columns [k0, k0+kc) in bfloat16 at leading dimension la (a multiple of kTK, zeros
// past kc); the driver zeroes the rows past mc up to a whole tile.
template <class BlockA>
void drive(int64_t M, int64_t K, const uint16_t* Bh, int64_t N, const float* bias, Act act, float* C,
           int64_t ldc, uint16_t* abuf, const BlockA& block) {
  const int64_t Kp = (K + 1) / 2, panels = (N + kNR - 1) / kNR;
  const bool narrow_last = N % kNR != 0 && N % kNR <= kNR / 2;  // gemm.h narrow_tail
  alignas(64) uint16_t tail[16 * kNR * 2];
  const int64_t kcb = k_block(M, K);
  auto step = [&](int64_t m0, int64_t k0) {
    const int64_t mc = lmin(kMC, M - m0), kc = lmin(kcb, K - k0);
    const int64_t steps = (kc + kTK - 1) / kTK, la = steps * kTK + kPad, q0 = k0 / 2;
    const bool first = k0 == 0, last = k0 + kcb >= K;
    block(m0, mc, k0, kc, la);
    for (int64_t i = mc; i < (mc + 15) / 16 * 16; ++i)
      for (int64_t t = 0; t < la; ++t) abuf[i * la + t] = 0;
    // Pairs of B the last step reads: 16, or fewer at the end of K (then from a zero-padded copy).
    const int64_t left = Kp - (q0 + 16 * (steps - 1));
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * kNR, cols = lmin(kNR, N - n0);
      const bool narrow = p == panels - 1 && narrow_last;
      const int64_t w = narrow ? kNR / 2 : kNR;  // columns per pair row
      const uint16_t* b = Bh + p * Kp * kNR * 2 + q0 * w * 2;
      const uint16_t* tp = nullptr;
      if (left < 16) {
        const uint16_t* src = b + (steps - 1) * 16 * w * 2;
        for (int64_t t = 0; t < 16 * w * 2; ++t) tail[t] = t < left * w * 2 ? src[t] : 0;
        tp = tail;
      }
      for (int64_t i = 0; i < mc; i += 32) {
        const int64_t rows = lmin(32, mc - i);
        Group g{abuf + i * la,
                la,
                b,
                w * 4,
                steps,
                tp,
                C + (m0 + i) * ldc + n0,
                ldc,
                rows,
                cols,
                bias ? bias + n0 : nullptr,
                first,
                last,
                act};
        if (rows > 16)
          cols > 16 ? run_group<2, 2>(g) : run_group<2, 1>(g);
        else
          cols > 16 ? run_group<1, 2>(g) : run_group<1, 1>(g);
      }
    }
  };
  amx_load_config();
  if (Kp * 2 * panels * kNR * int64_t(sizeof(uint16_t)) <= kRowsOuterBytes) {
    for (int64_t m0 = 0; m0 < M; m0 += kMC)
      for (int64_t k0 = 0; k0 < K; k0 += kcb) step(m0, k0);
  } else {
    for (int64_t k0 = 0; k0 < K; k0 += kcb)
      for (int64_t m0 = 0; m0 < M; m0 += kMC) step(m0, k0);
  }
  _tile_release();
}

// The A block's scratch, in floats: kMC rows (or M rounded up to a tile) of a K block + kPad bfloat16.
inline size_t scratch_for(int64_t M, int64_t K) {
  return size_t(lmin(kMC, (M + 15) / 16 * 16) * (k_block(M, K) + kPad) / 2);
}

}  // namespace

void gemm_bf16(const float* A, int64_t lda, int64_t M, int64_t K, const uint16_t* Bh, int64_t N,
               const float* bias, Act act, float* C, int64_t ldc) {
  if (M <= 0 || K <= 0 || N <= 0)  // K = 0: C = act(bias), nothing to sum

    return avx512bf16::gemm_bf16(A, lda, M, K, Bh, N, bias, act, C, ldc);
  uint16_t* buf = reinterpret_cast<uint16_t*>(runtime::thread_scratch(scratch_for(M, K)));
  drive(M, K, Bh, N, bias, act, C, ldc, buf,
        [&](int64_t m0, int64_t mc, int64_t k0, int64_t kc, int64_t la) {
          rows_block_bf16(A, lda, m0, mc, k0, kc, buf, la);
        });
}

void gemm_kron_bf16(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                    bool with_h, int64_t M, const uint16_t* Bh, int64_t N, const float* bias, Act act,
                    float* C, int64_t ldc) {
  const int64_t Kx = (l + 1) * m, K = Kx + (with_h ? l : 0);
  if (M <= 0 || K <= 0 || N <= 0)  // K = 0: C = act(bias), nothing to sum

    return avx512bf16::gemm_kron_bf16(x, ldx, m, h, ldh, l, with_h, M, Bh, N, bias, act, C, ldc);
  uint16_t* buf = reinterpret_cast<uint16_t*>(runtime::thread_scratch(scratch_for(M, K)));
  drive(M, K, Bh, N, bias, act, C, ldc, buf,
        [&](int64_t m0, int64_t mc, int64_t k0, int64_t kc, int64_t la) {
          kron_block_bf16(x, ldx, m, h, ldh, Kx, m0, mc, k0, kc, buf, la);
        });
}

}  // namespace dpn::kernels::avx512amx
