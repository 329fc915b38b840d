// GEMM with a statically packed right operand and a fused bias + activation epilogue.
// C[M×N] = act(A[M×K] · B[K×N] + bias). B is packed once at load into column panels of NR floats;
// NR depends on the kernel ISA (ref 8, avx2 16, avx512 32), so a PackedMatrix records the ISA it
// was packed for and every GEMM on it runs that ISA's kernel (a loaded model keeps its ISA).
// ISA kernels live in gemm_ref.cpp / gemm_avx2.cpp / gemm_avx512.cpp (isa_kernels.h).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/cpu_features.h"
#include "kernels/act.h"

namespace dpn::kernels {

using cpu::Isa;

// Panel width of the packed layout for an ISA's micro-kernel (`isa` must be cpu::available()).
int64_t panel_width(Isa isa);

// Packed layout: column panels of nr floats, panel p at p·K·nr, row k of a panel at k·nr, zero
// padded. Exception (nr >= 16): a last panel with at most nr/2 columns is packed nr/2 wide (stride
// nr/2), so a weight stream never reads a zero half (adjacent-line prefetch fetched it anyway: a
// 400-wide layer cost 13 panels of bandwidth for 12.5). Kernels read such a panel as one vector.
inline bool narrow_tail(int64_t N, int64_t nr) { return nr >= 16 && N % nr != 0 && N % nr <= nr / 2; }

// Floats needed by a packed K×N matrix.
inline int64_t packed_size(int64_t K, int64_t N, int64_t nr) {
  const int64_t panels = (N + nr - 1) / nr;
  return panels * K * nr - (narrow_tail(N, nr) ? K * (nr / 2) : 0);
}

// Pack B(k, n) = src[k*rs + n*cs] into dst (packed_size floats) with panel width nr.
// torch Linear weight [out=N, in=K]: rs = 1, cs = K.  A plain row-major K×N matrix: rs = N, cs = 1.
void pack_b(const float* src, int64_t K, int64_t N, int64_t rs, int64_t cs, int64_t nr, float* dst);

// Owned packed matrix, for ops that pack at load. Packed for the process's selected ISA unless
// told otherwise; remembers it.
struct PackedMatrix {
  int64_t K = 0, N = 0, nr = 8;
  Isa isa = Isa::Ref;
  std::vector<float> data;
  void pack(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs) {
    pack(src, k, n, rs, cs, cpu::selected_isa());
  }
  void pack(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs, Isa which);
};

// C = act(A · B + bias) for a PackedMatrix, on the ISA it was packed for. With threads > 1 and
// enough work, the column panels are split between that many pool threads (the calling thread is
// one of them); used when a batch is too small to split by rows.
void gemm(const float* A, int64_t lda, int64_t M, const PackedMatrix& B, const float* bias, Act act,
          float* C, int64_t ldc, int threads = 1);

// The Kronecker GEMM of a dynamic layer (docs/architecture.md, "The Kronecker identity"; kron.h):
// C = act(P · B + bias) with P = [x, h_1·x, …, h_l·x, (h if with_h)] for `rows` rows,
// B.K == (l+1)·m + (with_h ? l : 0). An ISA with a gemm_kron kernel (AVX-512) builds P block by
// block (kMC×kKC, L2 resident) inside its GEMM; the others build it whole in `panel` (scratch of
// rows × B.K floats) and run the plain GEMM.
// Whether gemm_kron on B needs the caller's `panel` scratch (false where the GEMM builds the
// left operand block by block itself).
bool kron_needs_panel(const PackedMatrix& B);

void gemm_kron(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
               bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act, float* C,
               int64_t ldc, float* panel, int threads = 1);

}  // namespace dpn::kernels
