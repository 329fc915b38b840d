// The ISA seam: every per-ISA kernel entry point, and the table of them each ISA fills once
// (kernels/dispatch.cpp). Callers go through the family headers (gemm.h, rows.h, act.h, ...), whose
// entry points look the table up once per call; nothing else chooses a kernel by ISA.
//
// Files compiled with ISA flags (*_avx2.cpp, *_avx512.cpp, added by dpn_add_kernel in
// cpp/CMakeLists.txt) include this header and must not instantiate inline functions or templates
// with external linkage: the linker could keep their AVX copy for the whole program. They use only
// intrinsics, their own internal-linkage helpers (vecmath_*.h) and out-of-line functions defined in
// baseline files (runtime/thread_scratch.h). Hence the deliberately small includes here.
#pragma once

#include <cstdint>

#include "kernels/act.h"

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// One signature per kernel family; the contracts are in the family headers named here.

// gemm.h: C = act(A · Bp + bias), Bp packed with the ISA's panel width.
using GemmFn = void(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
                    const float* bias, Act act, float* C, int64_t ldc);
// gemm.h: the Kronecker GEMM that builds its left operand [x, h·x, …, (h)] block by block.
using GemmKronFn = void(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                        bool with_h, int64_t M, const float* Bp, int64_t N, const float* bias, Act act,
                        float* C, int64_t ldc);
// gemm.h, bfloat16 weights: C = act(bf16(A) · Bh + bias), Bh packed as bfloat16 k-pairs
// (gemm.h, "bfloat16 packed layout"); A is float32 and rounded to bfloat16 (nearest even) as the
// kernel packs it; products are exact in float32, accumulation and the epilogue are float32.
using GemmBf16Fn = void(const float* A, int64_t lda, int64_t M, int64_t K, const uint16_t* Bh, int64_t N,
                        const float* bias, Act act, float* C, int64_t ldc);
// The Kronecker GEMM over bfloat16 weights: [x, h·x, …, (h)] built block by block, each value
// (the product s·x in float32) rounded to bfloat16 as it is written.
using GemmKronBf16Fn = void(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,
                            int64_t l, bool with_h, int64_t M, const uint16_t* Bh, int64_t N,
                            const float* bias, Act act, float* C, int64_t ldc);
// gemm.h, int8 weights: C = act(sa_i·s_j·(Σ_k qa_ik·qb_kj) + bias_j). Bq: int8 values packed as
// k-quads (gemm.h, "int8 packed layout"), per-column scales s_j and sums bsum_j = 128·Σ_k qb_kj.
// Each row of A (float32) is quantized as the kernel reads it: sa_i = max|a_i|/127, qa = rint(a·127/
// max|a_i|) in [-127, 127], stored as qa + 128 (u8) for u8×s8 dot products; bsum undoes the 128.
// The integer sums are exact (K <= kI8MaxK), so every version gives the same bits before the
// activation.
using GemmI8Fn = void(const float* A, int64_t lda, int64_t M, int64_t K, const int8_t* Bq,
                      const float* bscale, const int32_t* bsum, int64_t N, const float* bias, Act act,
                      float* C, int64_t ldc);
// The Kronecker GEMM over int8 weights: each row of [x, h·x, …, (h)] (the products s·x in float32)
// quantized as above as it is built.
using GemmKronI8Fn = void(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                          bool with_h, int64_t M, const int8_t* Bq, const float* bscale,
                          const int32_t* bsum, int64_t N, const float* bias, Act act, float* C,
                          int64_t ldc);
// kron.h
using KronPanelFn = void(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                         int64_t rows, bool with_h, float* P, int64_t ldp);
// rows.h
using PoolRowsFn = void(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
                        float* out);
// rows.h: the same over a float16 (bf16 false) or bfloat16 (bf16 true) table, widened on the fly.
using PoolRowsHalfFn = void(const uint16_t* table, bool bf16, int64_t dim, const int64_t* rows,
                            int64_t n, float scale, float* out);
// rows.h: the same over an int8 table, row r dequantized as scales[r] · q on the fly.
using PoolRowsInt8Fn = void(const int8_t* table, const float* scales, int64_t dim, const int64_t* rows,
                            int64_t n, float scale, float* out);
using LayernormRowsFn = void(const float* x, int64_t rows, int64_t d, const float* w, const float* b,
                             float eps, float* y);
using CrossRowsFn = void(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                         const float* b, float* y);
// act.h
using ActInplaceFn = void(float* x, int64_t n, Act a);
// softmax.h
using SoftmaxRowsFn = void(float* x, int64_t rows, int64_t cols, int64_t ld);
// field_attn.h
using FieldAttentionFn = void(float* s, const float* z, int64_t rows, int64_t t1, int64_t t2, int64_t n,
                              float* out);
// field_mix.h
using FieldMixFn = void(const float* W, const float* T, int64_t rows, int64_t t, int64_t c,
                        const float* bias, bool accumulate, float* y);
// dwconv.h
using DwconvRowsFn = void(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y);
using DwconvMeanFn = void(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y);
// attention.h
using AttentionRowsFn = void(const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H, float scale,
                             float* A, int64_t lda, float* scratch);
// kfatt.h
using KfattScoresFn = void(const float* q, const float* K, int64_t ldk, int64_t n, int64_t dh,
                           float scale, float* out);
using KfattWsumFn = void(const float* w, const float* V, int64_t ldv, int64_t n, int64_t dh, float* acc);
// gru.h
using GruGatesFn = void(const float* gi, const float* gh, const float* att, int64_t rows, int64_t h,
                        float* state);

// One ISA's kernels. Every pointer is set, except gemm_kron (null: the caller builds the whole
// Kronecker panel with kron_panel and runs gemm on it) and the bfloat16 pair (null: bfloat16
// weights are widened to float32 at pack time and the left operand is rounded to bfloat16 before
// the float32 gemm, the same arithmetic; gemm.cpp).
struct IsaKernels {
  int64_t panel_width = 0;  // NR of the packed-B layout this ISA's gemm reads
  GemmFn* gemm = nullptr;
  GemmKronFn* gemm_kron = nullptr;
  GemmBf16Fn* gemm_bf16 = nullptr;
  GemmKronBf16Fn* gemm_kron_bf16 = nullptr;
  // int8 weights: the AVX512_VNNI kernels where the CPU has them (avx512 levels), else the
  // reference versions (dispatch.cpp); always set.
  GemmI8Fn* gemm_i8 = nullptr;
  GemmKronI8Fn* gemm_kron_i8 = nullptr;
  KronPanelFn* kron_panel = nullptr;
  PoolRowsFn* pool_rows = nullptr;
  PoolRowsHalfFn* pool_rows_half = nullptr;
  PoolRowsInt8Fn* pool_rows_int8 = nullptr;
  LayernormRowsFn* layernorm_rows = nullptr;
  CrossRowsFn* cross_rows = nullptr;
  ActInplaceFn* act_inplace = nullptr;
  SoftmaxRowsFn* softmax_rows = nullptr;
  FieldAttentionFn* field_attention = nullptr;
  FieldMixFn* field_mix = nullptr;
  DwconvRowsFn* dwconv_rows = nullptr;
  DwconvMeanFn* dwconv_mean = nullptr;
  AttentionRowsFn* attention_rows = nullptr;
  KfattScoresFn* kfatt_scores = nullptr;
  KfattWsumFn* kfatt_wsum = nullptr;
  GruGatesFn* gru_gates = nullptr;
};

// The table of `isa` (filled at first use, then constant). `isa` must be cpu::available(): a
// table holds that ISA's code whatever the CPU.
const IsaKernels& isa_kernels(cpu::Isa isa);
// The table of the process's kernel ISA (cpu::selected_isa()).
const IsaKernels& isa_kernels();

// The per-ISA entry points, one namespace per ISA (files <family>_<isa>.cpp).

namespace ref {  // portable C++, no ISA flags: the oracle every other version is tested against
GemmFn gemm;
// Twins of the AVX512_BF16 kernels on the same bfloat16 layout (tests only: on the ref ISA
// bfloat16 weights take the widening path).
GemmBf16Fn gemm_bf16;
GemmKronBf16Fn gemm_kron_bf16;
// The int8 GEMMs in plain C++ (the same integer arithmetic as the VNNI kernels): the twins in the
// tests, and the int8 path of a CPU without AVX512_VNNI.
GemmI8Fn gemm_i8;
GemmKronI8Fn gemm_kron_i8;
KronPanelFn kron_panel;
PoolRowsFn pool_rows;
PoolRowsHalfFn pool_rows_half;
PoolRowsInt8Fn pool_rows_int8;
LayernormRowsFn layernorm_rows;
CrossRowsFn cross_rows;
ActInplaceFn act_inplace;
SoftmaxRowsFn softmax_rows;
FieldAttentionFn field_attention;
FieldMixFn field_mix;
DwconvRowsFn dwconv_rows;
DwconvMeanFn dwconv_mean;
AttentionRowsFn attention_rows;
KfattScoresFn kfatt_scores;
KfattWsumFn kfatt_wsum;
GruGatesFn gru_gates;
}  // namespace ref

namespace avx2 {  // -mavx2 -mfma -mf16c; Isa::Avx2
GemmFn gemm;
KronPanelFn kron_panel;
PoolRowsFn pool_rows;
PoolRowsHalfFn pool_rows_half;
PoolRowsInt8Fn pool_rows_int8;
LayernormRowsFn layernorm_rows;
CrossRowsFn cross_rows;
ActInplaceFn act_inplace;
SoftmaxRowsFn softmax_rows;
FieldAttentionFn field_attention;
FieldMixFn field_mix;
DwconvRowsFn dwconv_rows;
DwconvMeanFn dwconv_mean;
AttentionRowsFn attention_rows;
KfattScoresFn kfatt_scores;
KfattWsumFn kfatt_wsum;
GruGatesFn gru_gates;
}  // namespace avx2

namespace avx512 {  // -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma; Isa::Avx512
GemmFn gemm;
GemmKronFn gemm_kron;
KronPanelFn kron_panel;
PoolRowsFn pool_rows;
PoolRowsHalfFn pool_rows_half;
PoolRowsInt8Fn pool_rows_int8;
LayernormRowsFn layernorm_rows;
CrossRowsFn cross_rows;
ActInplaceFn act_inplace;
SoftmaxRowsFn softmax_rows;
FieldAttentionFn field_attention;
FieldMixFn field_mix;
DwconvRowsFn dwconv_rows;
DwconvMeanFn dwconv_mean;
AttentionRowsFn attention_rows;
KfattScoresFn kfatt_scores;
KfattWsumFn kfatt_wsum;
GruGatesFn gru_gates;
}  // namespace avx512

namespace avx512bf16 {  // the avx512 flags + -mavx512bf16; Isa::Avx512Bf16 (avx512's table otherwise)
GemmBf16Fn gemm_bf16;
GemmKronBf16Fn gemm_kron_bf16;
}  // namespace avx512bf16

namespace avx512amx {  // avx512bf16's flags + -mamx-tile -mamx-bf16 -mamx-int8; Isa::Avx512Amx
GemmBf16Fn gemm_bf16;
GemmKronBf16Fn gemm_kron_bf16;
GemmI8Fn gemm_i8;  // where the CPU has AMX-INT8 too
GemmKronI8Fn gemm_kron_i8;
}  // namespace avx512amx

namespace avx512vnni {  // the avx512 flags + -mavx512vnni; in the avx512 tables when the CPU has VNNI
GemmI8Fn gemm_i8;
GemmKronI8Fn gemm_kron_i8;
}  // namespace avx512vnni

}  // namespace dpn::kernels
