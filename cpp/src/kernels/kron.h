// Left panel of the Kronecker GEMM (docs/architecture.md, "The Kronecker identity";
// docs/format.md §7).
// Row b of P = [x_b, h_b1·x_b, …, h_bl·x_b, (h_b if with_h)], so P · A' == W(z_b)ᵀ x_b + h_b·Bd
// without ever building a per-row m×c weight.
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// Runs with the process's kernel ISA (cpu::selected_isa()); the overload taking an Isa runs that
// ISA's version (it must be cpu::available()). Every version gives the same bits.
// x: [rows, m] (ld ldx); h: [rows, l] (ld ldh); P: [rows, (l+1)·m + (with_h ? l : 0)] (ld ldp).
void kron_panel(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                int64_t rows, bool with_h, float* P, int64_t ldp);
void kron_panel(cpu::Isa isa, const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,
                int64_t l, int64_t rows, bool with_h, float* P, int64_t ldp);

}  // namespace dpn::kernels
