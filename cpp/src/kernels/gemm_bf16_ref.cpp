// Reference twins of the AVX512_BF16 GEMMs (gemm_bf16_avx512bf16.cpp): the same bfloat16 layout
// (gemm.h) and the same roundings (the left operand to bfloat16, nearest even, as it is read; a
// Kronecker product s·x in float32 first), summed in float32 in k order. Products of two bfloat16
// values are exact in float32, so the kernel and its twin differ only by float32 summation order
// (and the kernel's flushing of bfloat16 subnormals, |v| < 2^-126). Tests only: the ref ISA runs
// bfloat16 weights through the widening path (gemm.cpp).
#include <vector>

#include "kernels/half.h"
#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void gemm_bf16(const float* A, int64_t lda, int64_t M, int64_t K, const uint16_t* Bh, int64_t N,
               const float* bias, Act act, float* C, int64_t ldc) {
  constexpr int64_t nr = 32;  // kBf16Panel (gemm.h is not included in kernel files)
  const int64_t Kp = (K + 1) / 2, panels = (N + nr - 1) / nr;
  const bool narrow = N % nr != 0 && N % nr <= nr / 2;  // gemm.h narrow_tail
  std::vector<float> a(size_t(2 * Kp));
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t k = 0; k < 2 * Kp; ++k)
      a[size_t(k)] = k < K ? bf16_to_f32(f32_to_bf16(A[i * lda + k])) : 0.0f;
    for (int64_t j = 0; j < N; ++j) {
      const int64_t p = j / nr, w = p == panels - 1 && narrow ? nr / 2 : nr;
      const uint16_t* b = Bh + p * Kp * nr * 2 + (j - p * nr) * 2;
      float acc = bias ? bias[j] : 0.0f;
      for (int64_t q = 0; q < Kp; ++q) {
        acc += a[size_t(2 * q)] * bf16_to_f32(b[q * w * 2]);
        acc += a[size_t(2 * q + 1)] * bf16_to_f32(b[q * w * 2 + 1]);
      }
      C[i * ldc + j] = apply(act, acc);
    }
  }
}

void gemm_kron_bf16(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                    bool with_h, int64_t M, const uint16_t* Bh, int64_t N, const float* bias, Act act,
                    float* C, int64_t ldc) {
  const int64_t K = (l + 1) * m + (with_h ? l : 0);
  std::vector<float> P(size_t(M * K + 1));
  kron_panel(x, ldx, m, h, ldh, l, M, with_h, P.data(), K);  // ref's own
  gemm_bf16(P.data(), K, M, K, Bh, N, bias, act, C, ldc);
}

}  // namespace dpn::kernels::ref
