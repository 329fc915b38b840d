// Portable GEMM with a statically packed right operand and a fused bias + activation epilogue.
// C[M×N] = act(A[M×K] · B[K×N] + bias). B is packed once at load into column panels of kNR.
// Pure functions over pointers and sizes, so per-ISA versions can be dropped in later.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/act.h"

namespace dpn::kernels {

constexpr int64_t kNR = 8;  // panel width: two SSE registers per row of the micro-tile

// Floats needed by a packed K×N matrix: ceil(N/kNR) panels of K×kNR, zero padded.
inline int64_t packed_size(int64_t K, int64_t N) { return ((N + kNR - 1) / kNR) * K * kNR; }

// Pack B(k, n) = src[k*rs + n*cs] into dst (packed_size floats).
// torch Linear weight [out=N, in=K]: rs = 1, cs = K.  A plain row-major K×N matrix: rs = N, cs = 1.
void pack_b(const float* src, int64_t K, int64_t N, int64_t rs, int64_t cs, float* dst);

// C = act(A · Bp + bias); A row-major with leading dimension lda, C with ldc; bias may be null.
void gemm_packed(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
                 const float* bias, Act act, float* C, int64_t ldc);

// Owned packed matrix, for ops that pack at load.
struct PackedMatrix {
  int64_t K = 0, N = 0;
  std::vector<float> data;
  void pack(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs) {
    K = k;
    N = n;
    data.assign(static_cast<size_t>(packed_size(k, n)), 0.0f);
    pack_b(src, k, n, rs, cs, data.data());
  }
};

}  // namespace dpn::kernels
