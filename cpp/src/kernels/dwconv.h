// Depthwise convolution of one behaviour sequence: dwconv_rows applies a row's k × n kernel at every
// valid position (homogeneous DPO, the kernel materialized once by the caller; docs/architecture.md,
// "The Kronecker identity"); dwconv_mean gives the mean of that output over the valid positions
// without forming it (the separable-convolution generator's context, op seq_sepconv_pool).
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// y[i, j] = Σ_{τ=0}^{k−1} K[τ, j] · x[i + τ − k/2, j] for 0 ≤ i < L (rows of n floats, contiguous),
// leaving out taps that fall outside [0, L): positions past the length are never read or written.
// Terms are added in order of τ, products and sums rounded separately (no FMA), so every ISA gives
// the same bits as the reference. k odd ≥ 1, n ≥ 1, L ≥ 0; y must not alias x.
void dwconv_rows(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y);
void dwconv_rows(cpu::Isa isa, const float* x, int64_t L, int64_t n, const float* K, int64_t k,
                 float* y);

// y[j] = (1/L) Σ_{i<L} (dwconv_rows's y)[i, j], for L ≥ 1 (L = 0: y = 0). With S = Σ_{i<L} x_i (in
// order of i), P_o the sum of the first o positions and Q_o of the last o (each in order, from the
// row's end for Q), it computes acc = K[h]·S, then for o = 1 … h (h = k/2) while o < L:
// acc += K[h+o]·(S − P_o), acc += K[h−o]·(S − Q_o) (taps with o ≥ L see nothing), y = acc · (1/L).
// Products and sums rounded separately (no FMA): every ISA gives the reference's bits.
// O(L·n + k·n) instead of O(L·k·n).
void dwconv_mean(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y);
void dwconv_mean(cpu::Isa isa, const float* x, int64_t L, int64_t n, const float* K, int64_t k,
                 float* y);

}  // namespace dpn::kernels
