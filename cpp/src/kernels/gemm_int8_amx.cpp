// AMX-INT8 GEMMs over int8 weights (gemm.h, "int8 packed layout"; isa_kernels.h GemmI8Fn), the same
// arithmetic as the AVX512_VNNI ones (gemm_int8_avx512vnni.cpp) and so the same bits: each row of
// the left operand quantized to u8 (qa + 128) with its own scale, exact int32 sums of u8 × s8
// products, 128·Σq subtracted, then fma(float(acc), sa·s_j, bias) and the activation. One tdpbusd
// multiplies a 16×64 u8 tile of A by a 16-quad × 16-column s8 tile of B into a 16×16 int32 tile.
//
// Tiles as in gemm_bf16_amx.cpp: C in tmm0-3 (32 rows × one 32-column panel), A in tmm4-5, B in
// tmm6-7, read straight from the packed layout (a panel's quad row, 32 columns × 4 bytes, holds the
// rows of both B tiles). Row scales come first (a pass over each row, or for the Kronecker operand
// from max|x| and the |h_i|), so the A block is quantized per K block: kMC × kKC bytes (256 KiB, L2)
// while each panel's 32 KiB slice stays in L1. The int32 sums of a panel live in a scratch block
// between K blocks. K tails: A bytes past K are 128 up to the whole quad (B's packed zeros there)
// and 0 beyond; a last tile step with fewer than 16 quads reads B from a zero-padded copy.
// Compiled with the avx512amx flags; called only where the CPU has AMX-INT8 and the OS has granted
// the tile data (dispatch.cpp). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/int8_quant_avx512.h"
#include "kernels/amx_tiles.h"
#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"
#include "runtime/thread_scratch.h"

namespace dpn::kernels::avx512amx {

namespace {

constexpr int64_t kNR = 32;           // packed panel width
constexpr int64_t kPanelBytes = 128;  // one k-quad row of a full panel (32 columns × 4)
constexpr int64_t kTK = 64;           // k per tile step (16 quads)
constexpr int64_t kKC = 1024;         // k per block, a multiple of kTK
constexpr int64_t kMC = 256;          // rows per block, a multiple of 32
constexpr int64_t kPad = 64;          // A rows kPad bytes past their steps (as gemm_bf16_amx.cpp)
// Fewer rows run the VNNI kernels (faster there: a 16-row tile would be mostly padding). The sums
// are exact, so a row gets the same bits either way.
constexpr int64_t kMinRows = 16;

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// R 16-row halves × Q 16-column tiles of one panel's int32 sums at acc (stride 128 bytes): start
// from 0 (first) or acc, add `steps` tile steps of A (stride sa bytes) and B (stride sb bytes; the
// last step from `tail` when set), store back to acc.
template <int R, int Q>
void group(const uint8_t* a, int64_t sa, const int8_t* b, int64_t sb, int64_t steps, const int8_t* tail,
           int32_t* acc, bool first) {
  constexpr int64_t sc = kNR * 4;
  if (first)
    amx_zero_c<R, Q>();
  else
    amx_load_c<R, Q>(acc, sc);
  for (int64_t s = 0; s < steps; ++s) {
    const int8_t* bs = tail && s == steps - 1 ? tail : b + s * 16 * sb;  // 16 quad rows of sb bytes
    _tile_loadd(4, a + s * kTK, sa);
    if constexpr (R == 2) _tile_loadd(5, a + 16 * sa + s * kTK, sa);
    _tile_loadd(6, bs, sb);
    if constexpr (Q == 2) _tile_loadd(7, bs + 64, sb);
    _tile_dpbusd(0, 4, 6);
    if constexpr (Q == 2) _tile_dpbusd(1, 4, 7);
    if constexpr (R == 2) _tile_dpbusd(2, 5, 6);
    if constexpr (R == 2 && Q == 2) _tile_dpbusd(3, 5, 7);
  }
  amx_store_c<R, Q>(acc, sc);
}

// The VNNI kernel's epilogue, row by row: C = act(fma(float(acc − 128·Σq), sa_i·s_j, bias_j)).
void epilogue(const int32_t* acc, int64_t rows, int64_t cols, const float* sa, const float* bs,
              const int32_t* bsum, const float* bias, Act act, float* C, int64_t ldc) {
  for (int64_t j = 0; j < cols; j += 16) {
    const __mmask16 k = mask16(cols - j);
    const __m512 s = _mm512_maskz_loadu_ps(k, bs + j);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(k, bias + j) : _mm512_setzero_ps();
    const __m512i sum = _mm512_maskz_loadu_epi32(k, bsum + j);
    for (int64_t i = 0; i < rows; ++i) {
      const __m512i a = _mm512_sub_epi32(_mm512_loadu_si512(acc + i * kNR + j), sum);
      const __m512 v =
          _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(_mm512_set1_ps(sa[i]), s), bv);
      _mm512_mask_storeu_ps(C + i * ldc + j, k, vact(v, act));
    }
  }
}

// The blocked driver (M, K, N > 0). scale(i, &inv) returns row i's scale (and 127/max in inv);
// quant(i, inv, k0, kc, u) writes its columns [k0, k0+kc) quantized to u.
template <class Scale, class Quant>
void drive(int64_t M, int64_t K, const int8_t* Bq, const float* bs, const int32_t* bsum, int64_t N,
           const float* bias, Act act, float* C, int64_t ldc, const Scale& scale, const Quant& quant) {
  const int64_t Kq = (K + 3) / 4, Kw = 4 * Kq, panels = (N + kNR - 1) / kNR;
  const bool narrow_last = N % kNR != 0 && N % kNR <= kNR / 2;  // gemm.h narrow_tail
  const int64_t mcap = lmin(kMC, (M + 31) / 32 * 32), la_max = kKC + kPad;
  // Scratch: row scales and inverses, the A block, the int32 sums of every panel of the m-block.
  const size_t floats = size_t(2 * mcap + mcap * la_max / 4 + mcap * panels * kNR + 16);
  float* sa = runtime::thread_scratch(floats);
  float* inv = sa + mcap;
  uint8_t* u = reinterpret_cast<uint8_t*>(inv + mcap);
  int32_t* acc = reinterpret_cast<int32_t*>(u + mcap * la_max);
  alignas(64) int8_t tail[16 * kPanelBytes];
  auto step = [&](int64_t m0, int64_t k0) {
    const int64_t mc = lmin(kMC, M - m0), kc = lmin(kKC, K - k0);
    const int64_t steps = (kc + kTK - 1) / kTK, la = steps * kTK + kPad, q0 = k0 / 4;
    const bool first = k0 == 0, last = k0 + kKC >= K;
    const int64_t kw = lmin(kc + 3, Kw - k0) / 4 * 4;  // this block's bytes up to a whole quad
    for (int64_t i = 0; i < (mc + 15) / 16 * 16; ++i) {
      uint8_t* r = u + i * la;
      int64_t t = 0;
      if (i < mc) {
        quant(m0 + i, inv[i], k0, kc, r);
        for (t = kc; t < kw; ++t) r[t] = 128;
      }
      for (; t < la; ++t) r[t] = 0;
    }
    // Quads of B the last step reads: 16, or fewer at the end of K (then from a zero-padded copy).
    const int64_t left = Kq - (q0 + 16 * (steps - 1));
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * kNR, cols = lmin(kNR, N - n0);
      const int64_t sb = p == panels - 1 && narrow_last ? kPanelBytes / 2 : kPanelBytes;
      const int8_t* b = Bq + p * Kq * kPanelBytes + q0 * sb;
      const int8_t* tp = nullptr;
      if (left < 16) {
        const int8_t* src = b + (steps - 1) * 16 * sb;
        for (int64_t t = 0; t < 16 * sb; ++t) tail[t] = t < left * sb ? src[t] : 0;
        tp = tail;
      }
      int32_t* pacc = acc + p * mcap * kNR;
      for (int64_t i = 0; i < mc; i += 32) {
        const int64_t rows = lmin(32, mc - i);
        int32_t* gacc = pacc + i * kNR;
        const uint8_t* a = u + i * la;
        if (rows > 16)
          cols > 16 ? group<2, 2>(a, la, b, sb, steps, tp, gacc, first)
                    : group<2, 1>(a, la, b, sb, steps, tp, gacc, first);
        else
          cols > 16 ? group<1, 2>(a, la, b, sb, steps, tp, gacc, first)
                    : group<1, 1>(a, la, b, sb, steps, tp, gacc, first);
        if (last)
          epilogue(gacc, rows, cols, sa + i, bs + n0, bsum + n0, bias ? bias + n0 : nullptr, act,
                   C + (m0 + i) * ldc + n0, ldc);
      }
    }
  };
  amx_load_config();
  // The int32 sums of an m-block stay in scratch across its K blocks: rows outer.
  for (int64_t m0 = 0; m0 < M; m0 += kMC) {
    for (int64_t i = 0; i < lmin(kMC, M - m0); ++i) sa[i] = scale(m0 + i, &inv[i]);
    for (int64_t k0 = 0; k0 < K; k0 += kKC) step(m0, k0);
  }
  _tile_release();
}

}  // namespace

void gemm_i8(const float* A, int64_t lda, int64_t M, int64_t K, const int8_t* Bq, const float* bscale,
             const int32_t* bsum, int64_t N, const float* bias, Act act, float* C, int64_t ldc) {
  if (M < kMinRows || K <= 0 || N <= 0)  // K = 0: C = act(bias), nothing to sum
    return avx512vnni::gemm_i8(A, lda, M, K, Bq, bscale, bsum, N, bias, act, C, ldc);
  drive(
      M, K, Bq, bscale, bsum, N, bias, act, C, ldc,
      [&](int64_t i, float* inv) {
        bool bad = false;
        const float amax = max_abs(A + i * lda, K, &bad);  // before row_scale reads `bad`
        return row_scale(amax, bad, inv);
      },
      [&](int64_t i, float inv, int64_t k0, int64_t kc, uint8_t* u) {
        quantize(u, A + i * lda + k0, 1.0f, inv, kc);
      });
}

void gemm_kron_i8(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                  bool with_h, int64_t M, const int8_t* Bq, const float* bscale, const int32_t* bsum,
                  int64_t N, const float* bias, Act act, float* C, int64_t ldc) {
  const int64_t Kx = (l + 1) * m, K = Kx + (with_h ? l : 0);
  if (M < kMinRows || K <= 0 || N <= 0)
    return avx512vnni::gemm_kron_i8(x, ldx, m, h, ldh, l, with_h, M, Bq, bscale, bsum, N, bias, act, C,
                                    ldc);
  drive(
      M, K, Bq, bscale, bsum, N, bias, act, C, ldc,
      [&](int64_t i, float* inv) { return kron_row_scale(x + i * ldx, m, h + i * ldh, l, with_h, inv); },
      [&](int64_t i, float inv, int64_t k0, int64_t kc, uint8_t* u) {
        const float* xb = x + i * ldx;
        const float* hb = h + i * ldh;
        const int64_t end = k0 + kc;
        int64_t kk = k0;
        while (kk < end && kk < Kx) {
          const int64_t seg = kk / m, off = kk - seg * m, n = lmin(m - off, end - kk);
          quantize(u + (kk - k0), xb + off, seg == 0 ? 1.0f : hb[seg - 1], inv, n);
          kk += n;
        }
        if (kk < end) quantize(u + (kk - k0), hb + (kk - Kx), 1.0f, inv, end - kk);
      });
}

}  // namespace dpn::kernels::avx512amx
