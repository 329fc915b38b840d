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

// bfloat16 packed layout (the AVX512_BF16 kernels and their ref twins): column panels of
// kBf16Panel columns, each of ceil(K/2) k-pairs; pair q of column j is the two bfloat16 values
// {B(2q, j), B(2q+1, j)} at (q·w + j)·2 (what vdpbf16ps multiplies), an odd K's last pair padded
// with 0; w is the panel's stride, kBf16Panel or kBf16Panel/2 for a narrow last panel (as above).
constexpr int64_t kBf16Panel = 32;
inline int64_t bf16_pairs(int64_t K) { return (K + 1) / 2; }
// uint16 values needed by a K×N matrix in the bfloat16 layout.
inline int64_t bf16_packed_size(int64_t K, int64_t N) {
  return packed_size(2 * bf16_pairs(K), N, kBf16Panel);
}
// Pack B(k, n) = src[k*rs + n*cs], each value rounded to bfloat16 (nearest even), into dst.
void pack_b_bf16(const float* src, int64_t K, int64_t N, int64_t rs, int64_t cs, uint16_t* dst);

// int8 packed layout (the int8 GEMMs, isa_kernels.h GemmI8Fn, VNNI or reference): column panels of
// kI8Panel columns, each of ceil(K/4) k-quads; quad q of column j is the four int8 values
// {B(4q..4q+3, j)} at (q·w + j)·4 (what vpdpbusd multiplies), a last partial quad padded with 0; w
// as for bfloat16. kI8MaxK: the largest K whose int32 sums cannot overflow (K·255·127 < 2^31); a
// deeper weight stays float32.
constexpr int64_t kI8Panel = 32;
constexpr int64_t kI8MaxK = 65536;
inline int64_t i8_quads(int64_t K) { return (K + 3) / 4; }
inline int64_t i8_packed_size(int64_t K, int64_t N) { return packed_size(4 * i8_quads(K), N, kI8Panel); }

// x[i] = bfloat16(x[i]) widened back (nearest even), i < n: the left operand of a bfloat16 GEMM
// on an ISA without the bfloat16 kernels.
void round_bf16(float* x, int64_t n);

// Owned packed matrix, for ops that pack at load. Packed for the process's selected ISA unless
// told otherwise; remembers it.
// bf16 (pack_bf16): a bfloat16 weight. Its values are rounded to bfloat16 (exact for a tensor the
// file stored as bfloat16) and every GEMM on it rounds its left operand to bfloat16 too, with
// float32 accumulation: products of two bfloat16 values are exact in float32, so every ISA computes
// the same sums up to float32 summation order. Where the ISA has the bfloat16 kernels (AVX512_BF16)
// the values are in `half` (bfloat16 layout, nr = kBf16Panel); elsewhere widened in `data` (the
// ISA's float32 layout) and the GEMM rounds its left operand before the float32 kernel.
// int8 (pack_int8): a weight of an int8 file run with int8 arithmetic. Quantized per output column
// from its float32 values, symmetric as the converter does (s_j = max_k |B(k, j)| / 127, q =
// rint(B / s_j) in [-127, 127]; a [out, in] weight stored int8 per row gets its stored q back); in
// `q8` (int8 layout, nr = kI8Panel) with `qscale` (s_j) and `qsum` (128·Σ_k q(k, j)). Every GEMM on
// it quantizes its left operand per row (isa_kernels.h GemmI8Fn) and sums in int32, on every ISA
// (the AVX512_VNNI kernels, or the reference ones: the same bits).
enum class Weights { F32, Bf16, Int8 };
struct PackedMatrix {
  int64_t K = 0, N = 0, nr = 8;
  Isa isa = Isa::Ref;
  bool bf16 = false, bf16_kernels = false;  // bf16_kernels: in `half`, run by the bfloat16 kernels
  bool int8 = false;
  std::vector<float> data;
  std::vector<uint16_t> half;
  std::vector<int8_t> q8;
  std::vector<float> qscale;
  std::vector<int32_t> qsum;
  void pack(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs) {
    pack(src, k, n, rs, cs, cpu::selected_isa());
  }
  void pack(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs, Isa which);
  void pack_bf16(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs) {
    pack_bf16(src, k, n, rs, cs, cpu::selected_isa());
  }
  void pack_bf16(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs, Isa which);
  // int8 (above); K > kI8MaxK packs float32 instead.
  void pack_int8(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs, Isa which);
  // An op packs a weight for the arithmetic its file asks for (NodeBuilder::gemm_weights).
  void pack_as(Weights w, const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs) {
    if (w == Weights::Bf16) return pack_bf16(src, k, n, rs, cs);
    if (w == Weights::Int8) return pack_int8(src, k, n, rs, cs, cpu::selected_isa());
    pack(src, k, n, rs, cs);
  }
  Weights weights() const { return int8 ? Weights::Int8 : bf16 ? Weights::Bf16 : Weights::F32; }
};

// Pack the int8 values q (B(k, n) = q[k*rs + n*cs]) in the int8 layout into dst (i8_packed_size).
void pack_b_int8(const int8_t* q, int64_t K, int64_t N, int64_t rs, int64_t cs, int8_t* dst);

// The bfloat16 GEMM kernels' reference twins on a PackedMatrix packed with pack_bf16 for an ISA
// with the bfloat16 kernels (tests: the same layout and rounding, scalar sums).
void gemm_bf16_ref(const float* A, int64_t lda, int64_t M, const PackedMatrix& B, const float* bias,
                   Act act, float* C, int64_t ldc);
void gemm_kron_bf16_ref(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                        bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act,
                        float* C, int64_t ldc);

// The int8 GEMMs' reference versions on a PackedMatrix packed with pack_int8 (tests).
void gemm_i8_ref(const float* A, int64_t lda, int64_t M, const PackedMatrix& B, const float* bias,
                 Act act, float* C, int64_t ldc);
void gemm_kron_i8_ref(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                      bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act,
                      float* C, int64_t ldc);
// Which code runs the int8 GEMMs on `isa`: "avx512vnni" or "ref".
const char* int8_gemm_path(Isa isa);

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

// A Kronecker weight collapsed for one h (a ranking request's user, whose h every candidate shares):
// W_h = A_0 + h_1·A_1 + … + h_l·A_l [m × N], from B (float32, K = (l+1)·m rows [A_0; …; A_l]), written
// at dst in B's packed layout (packed_size(m, N, B.nr) floats). gemm_packed on it gives gemm_kron's
// result (with_h false) for every row of that h, at 1/(l+1) of the multiply-adds; it sums in another
// order. Each panel's blocks A_k are contiguous in the packed layout, so this is l axpys per panel.
void kron_collapse(const PackedMatrix& B, int64_t m, int64_t l, const float* h, float* dst,
                   int threads = 1);

// C = act(A · Bp + bias), Bp [K × like.N] in the float32 packed layout of `like` (its ISA and panel
// width): a matrix packed at run time outside a PackedMatrix (kron_collapse).
void gemm_packed(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp,
                 const PackedMatrix& like, const float* bias, Act act, float* C, int64_t ldc,
                 int threads = 1);

}  // namespace dpn::kernels
