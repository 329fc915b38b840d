// The int8 GEMMs in plain C++ (isa_kernels.h GemmI8Fn, gemm.h "int8 packed layout"): the twins of
// the AVX512_VNNI kernels (gemm_int8_avx512vnni.cpp), and the int8 path of every CPU without VNNI.
// The same integer arithmetic: each row of the left operand quantized to u8 = qa + 128, int32 sums
// of u8 × s8 products, bsum subtracted, then the float32 epilogue fma(float(acc), sa·s_j, bias)
// and the activation. Every step before the activation is exact or rounds once in a fixed order,
// so the VNNI kernels give the same bits (for identity and relu, whose vector forms are exact too).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

namespace {

constexpr int64_t kNR = 32;  // kI8Panel (gemm.h is not included in kernel files)
// A row whose max |a| is below this quantizes to zeros (127/max would overflow to inf).
constexpr float kMinMax = 1e-30f;

// u[t] = qa_t + 128 for the row v of n floats; returns the row's scale: max|v| / 127, 0 for a row
// whose max is below kMinMax (all qa = 0), NaN for a row with a value that is not finite (or a max
// of inf), so that every output of that row is NaN as in float32.
float quantize_row(const float* v, int64_t n, uint8_t* u) {
  float amax = 0.0f;
  bool bad = false;
  for (int64_t t = 0; t < n; ++t) {
    const float a = std::fabs(v[t]);
    bad = bad || !(a <= FLT_MAX);
    amax = std::max(amax, a);
  }
  std::fill(u, u + n, uint8_t(128));
  if (bad) return std::nanf("");
  if (!(amax >= kMinMax)) return 0.0f;
  const float inv = 127.0f / amax;
  for (int64_t t = 0; t < n; ++t) {
    const float s = std::min(127.0f, std::max(-127.0f, v[t] * inv));
    u[t] = uint8_t(int32_t(std::nearbyint(s)) + 128);
  }
  return amax / 127.0f;
}

// One quantized row (u: K values then 128-padding to whole quads) against every column.
void row_times_b(const uint8_t* u, float sa, int64_t K, const int8_t* Bq, const float* bscale,
                 const int32_t* bsum, int64_t N, const float* bias, Act act, float* c) {
  const int64_t Kq = (K + 3) / 4, panels = (N + kNR - 1) / kNR;
  const bool narrow = N % kNR != 0 && N % kNR <= kNR / 2;  // gemm.h narrow_tail
  int32_t acc[kNR];
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t w = p == panels - 1 && narrow ? kNR / 2 : kNR, cols = std::min(kNR, N - p * kNR);
    const int8_t* b = Bq + p * Kq * kNR * 4;
    std::fill(acc, acc + kNR, 0);
    // |Σ u·q| <= K·255·127 < 2^31 for K <= kI8MaxK: no int32 overflow.
    for (int64_t q = 0; q < Kq; ++q, b += w * 4)
      for (int64_t j = 0; j < w; ++j)
        for (int64_t t = 0; t < 4; ++t) acc[j] += int32_t(u[4 * q + t]) * int32_t(b[j * 4 + t]);
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t n = p * kNR + j;
      const float v = float(acc[j] - bsum[n]);
      c[n] = apply(act, std::fma(v, sa * bscale[n], bias ? bias[n] : 0.0f));
    }
  }
}

}  // namespace

void gemm_i8(const float* A, int64_t lda, int64_t M, int64_t K, const int8_t* Bq, const float* bscale,
             const int32_t* bsum, int64_t N, const float* bias, Act act, float* C, int64_t ldc) {
  const int64_t Kw = 4 * ((K + 3) / 4);
  std::vector<uint8_t> u(size_t(Kw), uint8_t(128));
  for (int64_t i = 0; i < M; ++i) {
    const float* a = A + i * lda;
    const float sa = quantize_row(a, K, u.data());
    row_times_b(u.data(), sa, K, Bq, bscale, bsum, N, bias, act, C + i * ldc);
  }
}

void gemm_kron_i8(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                  bool with_h, int64_t M, const int8_t* Bq, const float* bscale, const int32_t* bsum,
                  int64_t N, const float* bias, Act act, float* C, int64_t ldc) {
  const int64_t K = (l + 1) * m + (with_h ? l : 0), Kw = 4 * ((K + 3) / 4);
  std::vector<float> P(size_t(K + 1));
  std::vector<uint8_t> u(size_t(Kw), uint8_t(128));
  for (int64_t i = 0; i < M; ++i) {
    kron_panel(x + i * ldx, ldx, m, h + i * ldh, ldh, l, 1, with_h, P.data(), K);  // ref's own
    const float sa = quantize_row(P.data(), K, u.data());
    row_times_b(u.data(), sa, K, Bq, bscale, bsum, N, bias, act, C + i * ldc);
  }
}

}  // namespace dpn::kernels::ref
