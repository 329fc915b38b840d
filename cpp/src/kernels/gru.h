// One step of a GRU / AUGRU recurrence (docs/format.md §5c, ops `gru` and `augru`) for a block of
// rows, after the caller's GEMMs: gi = W_ih·x_t + b_ih (all steps in one GEMM) and gh = W_hh·h + b_hh
// (the rows' states in one GEMM per step). Gates in torch.nn.GRU's order (reset, update, new).
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// For rows i < rows (gi, gh: [rows, 3h] contiguous; state: [rows, h], read and written):
//   r = σ(gi_r + gh_r), u = σ(gi_u + gh_u), n = tanh(gi_n + r ⊙ gh_n)
//   att == nullptr (GRU):  state = (1 − u) ⊙ n + u ⊙ state              (torch.nn.GRU)
//   att != nullptr (AUGRU): u' = att[i]·u, state = (1 − u') ⊙ state + u' ⊙ n   (DIEN)
// Products and sums rounded separately (no FMA); σ and tanh as act.h's, so the vector versions
// match the reference to a few ulp.
void gru_gates(const float* gi, const float* gh, const float* att, int64_t rows, int64_t h,
               float* state);
void gru_gates(cpu::Isa isa, const float* gi, const float* gh, const float* att, int64_t rows, int64_t h,
               float* state);

}  // namespace dpn::kernels
