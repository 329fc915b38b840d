// Attention aggregation of the field-based DPO (docs/format.md §5 `field_dylinear`): per row, each
// target field i takes the softmax over context fields j of its scores and sums the context rows
// with those weights. The scores come from two ordinary GEMMs in the op; this is the part with no
// static operand.
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// For each of `rows` rows: s [t2, t1] (score of context field j for target field i, row-major),
// z [t2, n], out [t1, n] with out_i = Σ_j softmax_j(s[·, i])_j · z_j. s is overwritten with the
// softmax weights. The vector versions compute the softmax with a vector exp (Cephes, a few ulp
// from the reference's std::exp), so they match the reference to rtol 1e-5; the weighted sum is in
// the same order everywhere (no fused multiply-add).
void field_attention(float* s, const float* z, int64_t rows, int64_t t1, int64_t t2, int64_t n,
                     float* out);
void field_attention(cpu::Isa isa, float* s, const float* z, int64_t rows, int64_t t1, int64_t t2,
                     int64_t n, float* out);

}  // namespace dpn::kernels
