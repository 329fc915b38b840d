// AVX512_VNNI GEMMs over int8 weights (gemm.h, "int8 packed layout"; isa_kernels.h GemmI8Fn): a
// 12×32 register tile of int32 sums, one vpdpbusd per 16 columns and k-quad (four u8 × s8 products
// per lane: four times the float32 FMA's multiplies, a quarter of its weight bytes). Rows of the
// left operand are quantized whole (their scale needs the row's max) into a block of at most
// kABytes of u8 (qa + 128), then every panel runs over the block with the whole K in registers.
// The int32 sums of (qa + 128)·q stay below K·255·127 < 2^31 for K <= kI8MaxK, so they are exact;
// bsum (128·Σ q) is subtracted in the epilogue. The epilogue is
// fma(float(acc), sa·s_j, bias), then the activation. The Kronecker GEMM quantizes each row of
// [x, h1·x, …, hl·x, h] as it builds it (its scale without the row: kron_row_scale), each s·x
// rounded to float32 and quantized, as the reference builds the row and quantizes it. The
// quantizers are shared with the AMX version (int8_quant_avx512.h).
// Reference versions: gemm_int8_ref.cpp (the same bits). Compiled with the avx512 flags plus
// -mavx512vnni; only in a table when the CPU has AVX512_VNNI (dispatch.cpp). See isa_kernels.h for
// what this file must not use.
#include <immintrin.h>

#include "kernels/int8_quant_avx512.h"
#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"
#include "runtime/thread_scratch.h"

namespace dpn::kernels::avx512vnni {

namespace {

constexpr int64_t kNR = 32;
constexpr int64_t kMR = 12;
// Quantized rows per block: at most this many bytes (L2 resident beside a weight panel), whole
// row tiles, at most kMaxMC rows.
constexpr int64_t kABytes = int64_t(256) << 10;
constexpr int64_t kMaxMC = 192;
constexpr int64_t kPanelBytes = 128;  // one k-quad row of a full panel (32 columns × 4)

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// The four u8 values of quad q of a row, broadcast.
inline __m512i quad(const uint8_t* row, int64_t q) {
  int v;
  __builtin_memcpy(&v, row + 4 * q, sizeof v);
  return _mm512_set1_epi32(v);
}

// MR rows × P panels side by side (the last with `nlast` columns; packed 16 wide when H), every
// k-quad. a: u8 rows, quad q of row i at a + i·lda + 4q; sa: their scales.
template <int MR, int P, int H>
void tile(const uint8_t* a, int64_t lda, const float* sa, const int8_t* b0, int64_t Kq, const float* bs,
          const int32_t* bsum, float* C, int64_t ldc, int64_t nlast, const float* bias, Act act) {
  constexpr int NV = 2 * P - H;  // 16-column vectors per k-quad
  const int8_t* bp = b0;
  const int8_t* bn = b0 + (P - 1) * Kq * kPanelBytes;  // the narrow last panel (H = 1)
  __mmask16 mk[NV];
  __v16si c[MR][NV];  // int32 lanes (not __m512i's int64: a punned array is kept in memory)
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    const int64_t col = (j / 2) * kNR + (j % 2) * 16;
    mk[j] = j / 2 == P - 1 ? mask16(nlast - (j % 2) * 16) : __mmask16(0xFFFF);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) c[i][j] = __v16si{};
  }
  for (int64_t q = 0; q < Kq; ++q) {
    __m512i b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      b[j] = _mm512_loadu_si512(H && j == NV - 1 ? bn : bp + (j / 2) * Kq * kPanelBytes + (j % 2) * 64);
    bp += kPanelBytes;
    bn += kPanelBytes / 2;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512i av = quad(a + i * lda, q);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) c[i][j] = (__v16si)_mm512_dpbusd_epi32((__m512i)c[i][j], av, b[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    const int64_t col = (j / 2) * kNR + (j % 2) * 16;
    const __m512 s = _mm512_maskz_loadu_ps(mk[j], bs + col);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk[j], bias + col) : _mm512_setzero_ps();
    const __m512i sum = _mm512_maskz_loadu_epi32(mk[j], bsum + col);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512i acc = _mm512_sub_epi32((__m512i)c[i][j], sum);  // Σ (qa + 128)·q - 128·Σ q
      const __m512 v =
          _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(_mm512_set1_ps(sa[i]), s), bv);
      _mm512_mask_storeu_ps(C + i * ldc + col, mk[j], vact(v, act));
    }
  }
}

struct Args {
  const uint8_t* a;
  int64_t lda;
  const float* sa;
  const int8_t* b0;  // first panel of the group
  int64_t Kq;
  const float* bs;
  const int32_t* bsum;
  float* C;
  int64_t ldc, nlast;
  const float* bias;
  Act act;
};

template <int MR, int P>
void run_p(const Args& g) {
  if (g.nlast <= 16)
    return tile<MR, P, 1>(g.a, g.lda, g.sa, g.b0, g.Kq, g.bs, g.bsum, g.C, g.ldc, g.nlast, g.bias,
                          g.act);
  tile<MR, P, 0>(g.a, g.lda, g.sa, g.b0, g.Kq, g.bs, g.bsum, g.C, g.ldc, g.nlast, g.bias, g.act);
}

// run_p<mr, P>(g) for a run-time 1 <= mr <= MR.
template <int MR, int P>
void run_rows(int64_t mr, const Args& g) {
  if constexpr (MR > 1)
    if (mr < MR) return run_rows<MR - 1, P>(mr, g);
  run_p<MR, P>(g);
}

// run_p<MR, n>(g) for a run-time 1 <= n <= 4 panels side by side.
template <int MR, int P = 4>
void run_panels(int64_t n, const Args& g) {
  if constexpr (P > 1)
    if (n < P) return run_panels<MR, P - 1>(n, g);
  run_p<MR, P>(g);
}

// Panel g.b0 onwards for this block's rows: 1-3 rows (batch 1 above all) take several panels at
// once, so enough accumulator chains hide vpdpbusd's latency; more rows take 12-row tiles.
void run_block(int64_t mc, Args g, int64_t N) {
  const int64_t panels = (N + kNR - 1) / kNR;
  const int8_t* B = g.b0;
  const float *bs = g.bs, *bias = g.bias;
  const int32_t* bsum = g.bsum;
  float* C = g.C;
  auto at = [&](int64_t p, int64_t n) {  // g for panels [p, p + n)
    g.b0 = B + p * g.Kq * kPanelBytes;
    g.bs = bs + p * kNR;
    g.bsum = bsum + p * kNR;
    g.bias = bias ? bias + p * kNR : nullptr;
    g.C = C + p * kNR;
    g.nlast = lmin(kNR, N - (p + n - 1) * kNR);
  };
  if (mc <= 3) {
    const int64_t step = mc == 1 ? 4 : 2, groups = (panels + step - 1) / step;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t p = panels * gi / groups, n = panels * (gi + 1) / groups - p;
      at(p, n);
      if (mc == 1)
        run_panels<1>(n, g);
      else if (mc == 2)
        run_panels<2>(n, g);
      else
        run_panels<3>(n, g);
    }
    return;
  }
  const uint8_t* a = g.a;
  const float* sa = g.sa;
  for (int64_t p = 0; p < panels; ++p) {
    at(p, 1);
    float* Cp = g.C;
    for (int64_t i = 0; i < mc; i += kMR) {
      g.a = a + i * g.lda;
      g.sa = sa + i;
      g.C = Cp + i * g.ldc;
      run_rows<kMR, 1>(lmin(kMR, mc - i), g);
    }
  }
}

// The blocked driver: row(i, u) quantizes row i of the left operand into u (K values, then 128 up to
// whole quads) and returns its scale.
template <class Row>
void drive(int64_t M, int64_t K, const int8_t* Bq, const float* bs, const int32_t* bsum, int64_t N,
           const float* bias, Act act, float* C, int64_t ldc, const Row& row) {
  if (M <= 0 || N <= 0) return;
  const int64_t Kq = (K + 3) / 4, Kw = 4 * Kq;
  int64_t mcmax = Kw > 0 ? kABytes / Kw / kMR * kMR : kMaxMC;
  mcmax = mcmax < kMR ? kMR : mcmax > kMaxMC ? kMaxMC : mcmax;
  float* sa = runtime::thread_scratch(size_t(mcmax + (mcmax * Kw + 3) / 4 + 1));
  uint8_t* u = reinterpret_cast<uint8_t*>(sa + mcmax);
  for (int64_t m0 = 0; m0 < M; m0 += mcmax) {
    const int64_t mc = lmin(mcmax, M - m0);
    for (int64_t i = 0; i < mc; ++i) {
      uint8_t* r = u + i * Kw;
      sa[i] = row(m0 + i, r);
      for (int64_t t = K; t < Kw; ++t) r[t] = 128;
    }
    run_block(mc, Args{u, Kw, sa, Bq, Kq, bs, bsum, C + m0 * ldc, ldc, 0, bias, act}, N);
  }
}

}  // namespace

void gemm_i8(const float* A, int64_t lda, int64_t M, int64_t K, const int8_t* Bq, const float* bscale,
             const int32_t* bsum, int64_t N, const float* bias, Act act, float* C, int64_t ldc) {
  drive(M, K, Bq, bscale, bsum, N, bias, act, C, ldc, [&](int64_t i, uint8_t* u) {
    const float* a = A + i * lda;
    bool bad = false;
    float inv;
    const float amax = max_abs(a, K, &bad);  // before row_scale reads `bad`
    const float sa = row_scale(amax, bad, &inv);
    quantize(u, a, 1.0f, inv, K);
    return sa;
  });
}

void gemm_kron_i8(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                  bool with_h, int64_t M, const int8_t* Bq, const float* bscale, const int32_t* bsum,
                  int64_t N, const float* bias, Act act, float* C, int64_t ldc) {
  const int64_t K = (l + 1) * m + (with_h ? l : 0);
  drive(M, K, Bq, bscale, bsum, N, bias, act, C, ldc, [&](int64_t i, uint8_t* u) {
    const float* xb = x + i * ldx;
    const float* hb = h + i * ldh;
    float inv;
    const float sa = kron_row_scale(xb, m, hb, l, with_h, &inv);
    quantize(u, xb, 1.0f, inv, m);
    for (int64_t k = 0; k < l; ++k) quantize(u + (k + 1) * m, xb, hb[k], inv, m);
    if (with_h) quantize(u + (l + 1) * m, hb, 1.0f, inv, l);
    return sa;
  });
}

}  // namespace dpn::kernels::avx512vnni
