// Field mix of the implicit Field-DNN part (docs/format.md §5 `field_dylinear`): per row, output
// field i gets Σ_k W_f[i,k] · T_k, where T = X W_l was computed by one GEMM over rows·t fields.
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// For each of `rows` rows: y[i, :] = s_i + Σ_k W[i, k] · T[k, :] over k = 0..t-1 in order, with
// W [t, t], T and y [t, c] per row, and s_i = y[i, :] (accumulate), else bias (or 0 when bias is
// null). Every ISA gives the same bits (no fused multiply-add, the same order per element).
void field_mix(const float* W, const float* T, int64_t rows, int64_t t, int64_t c, const float* bias,
               bool accumulate, float* y);
void field_mix(cpu::Isa isa, const float* W, const float* T, int64_t rows, int64_t t, int64_t c,
               const float* bias, bool accumulate, float* y);

}  // namespace dpn::kernels
