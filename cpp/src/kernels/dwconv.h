// Dynamic depthwise convolution of one behaviour sequence (homogeneous DPO; docs/architecture.md,
// "The Kronecker identity"): the row's k × n kernel is materialized once by the caller and applied
// here at every valid position.
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

}  // namespace dpn::kernels
