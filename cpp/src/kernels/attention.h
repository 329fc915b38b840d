// The core of masked multi-head self-attention for one sequence (ops/self_attention.cpp): given the
// projected Q, K, V of its L valid positions, every head's softmax-weighted sum of values.
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// qkv: L rows of [q (d), k (d), v (d)] with leading dimension ldq; head h uses columns
// [h·d/H, (h+1)·d/H) of each part. For every position i < L and head h:
//   A[i, head h] = Σ_{j<L} softmax_j(scale · q_i·k_j) v_j.
// A has leading dimension lda. scratch: attention_scratch_floats(L, d) floats. L = 0 does nothing.
// The vector versions use a vector exp and fused multiply-adds: they match the reference within
// float rounding (a few ulp of the scores, rtol ~1e-6), not bit for bit.
int64_t attention_scratch_floats(int64_t L, int64_t d);
void attention_rows(const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H, float scale,
                    float* A, int64_t lda, float* scratch);
void attention_rows(cpu::Isa isa, const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H,
                    float scale, float* A, int64_t lda, float* scratch);

}  // namespace dpn::kernels
