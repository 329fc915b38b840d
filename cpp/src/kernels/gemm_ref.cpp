// Portable reference GEMM (the test oracle): 6x8 micro-tile with GCC vector extensions (SSE2
// baseline, no ISA flags). B packed with panel width 8 (panel_width(Isa::Ref)).
#include "kernels/isa_kernels.h"

#include <algorithm>

namespace dpn::kernels::ref {

namespace {

constexpr int64_t kNR = 8;
constexpr int64_t kMR = 6;    // rows per micro-tile: 6×8 accumulators = 12 SSE registers
constexpr int64_t kKC = 256;  // K block: one B panel slice (256×8 floats = 8 KiB) stays in L1
constexpr int64_t kMC = 64;   // M block: 64×256 floats of A (64 KiB) stay in L2

// One micro-tile: rows [0, MR) of A (K slice kc) times one packed panel slice.
// first: start from bias (or 0) instead of C; last: apply the activation before storing.
// GCC/Clang vector extensions (4 floats = one SSE2 register; no ISA flags needed) keep the MR×8
// accumulators in registers; other compilers get the plain loop.
#if defined(__GNUC__)
typedef float v4 __attribute__((vector_size(16)));
static_assert(kNR == 8, "the micro-kernel holds a row of the tile in two 4-float vectors");

inline v4 load4(const float* p) {
  v4 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <int MR>
void tile(const float* A, int64_t lda, const float* bp, int64_t kc, float* C, int64_t ldc, int64_t nr,
          const float* bias, bool first, bool last, Act act) {
  float init[MR][kNR];
  for (int i = 0; i < MR; ++i)
    for (int64_t j = 0; j < kNR; ++j)
      init[i][j] = j < nr ? (first ? (bias ? bias[j] : 0.0f) : C[i * ldc + j]) : 0.0f;
  v4 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) {
    acc0[i] = load4(init[i]);
    acc1[i] = load4(init[i] + 4);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const v4 b0 = load4(bp + k * kNR), b1 = load4(bp + k * kNR + 4);
    for (int i = 0; i < MR; ++i) {
      const float a = A[i * lda + k];
      acc0[i] += a * b0;
      acc1[i] += a * b1;
    }
  }
  float res[MR][kNR];
  for (int i = 0; i < MR; ++i) {
    __builtin_memcpy(res[i], &acc0[i], sizeof(v4));
    __builtin_memcpy(res[i] + 4, &acc1[i], sizeof(v4));
  }
  if (last && act != Act::Identity)
    for (int i = 0; i < MR; ++i)
      for (int64_t j = 0; j < kNR; ++j) res[i][j] = apply(act, res[i][j]);
  for (int i = 0; i < MR; ++i)
    for (int64_t j = 0; j < nr; ++j) C[i * ldc + j] = res[i][j];
}
#else
template <int MR>
void tile(const float* A, int64_t lda, const float* bp, int64_t kc, float* C, int64_t ldc, int64_t nr,
          const float* bias, bool first, bool last, Act act) {
  float acc[MR][kNR];
  for (int i = 0; i < MR; ++i)
    for (int64_t j = 0; j < kNR; ++j)
      acc[i][j] = j < nr ? (first ? (bias ? bias[j] : 0.0f) : C[i * ldc + j]) : 0.0f;
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < MR; ++i)
      for (int64_t j = 0; j < kNR; ++j) acc[i][j] += A[i * lda + k] * bp[k * kNR + j];
  if (last && act != Act::Identity)
    for (int i = 0; i < MR; ++i)
      for (int64_t j = 0; j < kNR; ++j) acc[i][j] = apply(act, acc[i][j]);
  for (int i = 0; i < MR; ++i)
    for (int64_t j = 0; j < nr; ++j) C[i * ldc + j] = acc[i][j];
}
#endif

}  // namespace

void gemm(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
          const float* bias, Act act, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const int64_t panels = (N + kNR - 1) / kNR;
  // K == 0 still runs one pass so C = act(bias).
  for (int64_t k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const bool first = k0 == 0, last = k0 + kKC >= K;
    for (int64_t m0 = 0; m0 < M; m0 += kMC) {
      const int64_t mc = std::min(kMC, M - m0);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t n0 = p * kNR, nr = std::min(kNR, N - n0);
        const float* bp = Bp + p * K * kNR + k0 * kNR;
        const float* bb = bias ? bias + n0 : nullptr;
        for (int64_t i = 0; i < mc; i += kMR) {
          const float* a = A + (m0 + i) * lda + k0;
          float* c = C + (m0 + i) * ldc + n0;
          switch (std::min(kMR, mc - i)) {
            case 6: tile<6>(a, lda, bp, kc, c, ldc, nr, bb, first, last, act); break;
            case 5: tile<5>(a, lda, bp, kc, c, ldc, nr, bb, first, last, act); break;
            case 4: tile<4>(a, lda, bp, kc, c, ldc, nr, bb, first, last, act); break;
            case 3: tile<3>(a, lda, bp, kc, c, ldc, nr, bb, first, last, act); break;
            case 2: tile<2>(a, lda, bp, kc, c, ldc, nr, bb, first, last, act); break;
            default: tile<1>(a, lda, bp, kc, c, ldc, nr, bb, first, last, act); break;
          }
        }
      }
    }
    if (K == 0) break;
  }
}

}  // namespace dpn::kernels::ref
