// The kernel tables (isa_kernels.h), one per ISA, each filled once; and the family entry points
// (rows.h, act.h, softmax.h, kron.h, field_attn.h, field_mix.h, dwconv.h, attention.h, kfatt.h, gru.h),
// which look the table up once per call. The only place that maps an ISA to its code.
#include "kernels/isa_kernels.h"

#include "cpu/cpu_features.h"
#include "kernels/act.h"
#include "kernels/attention.h"
#include "kernels/kfatt.h"
#include "kernels/dwconv.h"
#include "kernels/field_attn.h"
#include "kernels/field_mix.h"
#include "kernels/gru.h"
#include "kernels/kron.h"
#include "kernels/rows.h"
#include "kernels/softmax.h"

namespace dpn::kernels {

namespace {

// One filler per ISA, run once. A new ISA's filler starts from the table of the best ISA below it
// and replaces the entries it has its own kernels for (e.g. `IsaKernels k = avx512_kernels();
// k.gemm = bf16::gemm;`), so every entry stays set.
IsaKernels ref_kernels() {
  IsaKernels k;
  k.panel_width = 8;
  k.gemm = ref::gemm;
  k.gemm_i8 = ref::gemm_i8;
  k.gemm_kron_i8 = ref::gemm_kron_i8;
  k.kron_panel = ref::kron_panel;
  k.pool_rows = ref::pool_rows;
  k.pool_rows_half = ref::pool_rows_half;
  k.pool_rows_int8 = ref::pool_rows_int8;
  k.layernorm_rows = ref::layernorm_rows;
  k.cross_rows = ref::cross_rows;
  k.act_inplace = ref::act_inplace;
  k.softmax_rows = ref::softmax_rows;
  k.field_attention = ref::field_attention;
  k.field_mix = ref::field_mix;
  k.dwconv_rows = ref::dwconv_rows;
  k.dwconv_mean = ref::dwconv_mean;
  k.attention_rows = ref::attention_rows;
  k.kfatt_scores = ref::kfatt_scores;
  k.kfatt_wsum = ref::kfatt_wsum;
  k.gru_gates = ref::gru_gates;
  return k;
}

#if defined(DPN_HAVE_X86_KERNELS)
IsaKernels avx2_kernels() {
  IsaKernels k;
  k.panel_width = 16;
  k.gemm = avx2::gemm;
  k.gemm_i8 = ref::gemm_i8;  // no AVX2 int8 GEMM: the reference one (the same bits)
  k.gemm_kron_i8 = ref::gemm_kron_i8;
  k.kron_panel = avx2::kron_panel;
  k.pool_rows = avx2::pool_rows;
  k.pool_rows_half = avx2::pool_rows_half;
  k.pool_rows_int8 = avx2::pool_rows_int8;
  k.layernorm_rows = avx2::layernorm_rows;
  k.cross_rows = avx2::cross_rows;
  k.act_inplace = avx2::act_inplace;
  k.softmax_rows = avx2::softmax_rows;
  k.field_attention = avx2::field_attention;
  k.field_mix = avx2::field_mix;
  k.dwconv_rows = avx2::dwconv_rows;
  k.dwconv_mean = avx2::dwconv_mean;
  k.attention_rows = avx2::attention_rows;
  k.kfatt_scores = avx2::kfatt_scores;
  k.kfatt_wsum = avx2::kfatt_wsum;
  k.gru_gates = avx2::gru_gates;
  return k;
}

IsaKernels avx512_kernels() {
  IsaKernels k;
  k.panel_width = 32;
  k.gemm = avx512::gemm;
  k.gemm_kron = avx512::gemm_kron;
  // AVX512_VNNI is a CPUID bit of its own (not implied by the avx512 level): where the CPU lacks it,
  // int8 weights run the reference int8 GEMMs, which give the same bits.
  const bool vnni = cpu::features().avx512_vnni;
  k.gemm_i8 = vnni ? avx512vnni::gemm_i8 : ref::gemm_i8;
  k.gemm_kron_i8 = vnni ? avx512vnni::gemm_kron_i8 : ref::gemm_kron_i8;
  k.kron_panel = avx512::kron_panel;
  k.pool_rows = avx512::pool_rows;
  k.pool_rows_half = avx512::pool_rows_half;
  k.pool_rows_int8 = avx512::pool_rows_int8;
  k.layernorm_rows = avx512::layernorm_rows;
  k.cross_rows = avx512::cross_rows;
  k.act_inplace = avx512::act_inplace;
  k.softmax_rows = avx512::softmax_rows;
  k.field_attention = avx512::field_attention;
  k.field_mix = avx512::field_mix;
  k.dwconv_rows = avx512::dwconv_rows;
  k.dwconv_mean = avx512::dwconv_mean;
  k.attention_rows = avx512::attention_rows;
  k.kfatt_scores = avx512::kfatt_scores;
  k.kfatt_wsum = avx512::kfatt_wsum;
  k.gru_gates = avx512::gru_gates;
  return k;
}
// avx512 plus the bfloat16 GEMMs (vdpbf16ps); float32 models run avx512's kernels unchanged.
IsaKernels avx512bf16_kernels() {
  IsaKernels k = avx512_kernels();
  k.gemm_bf16 = avx512bf16::gemm_bf16;
  k.gemm_kron_bf16 = avx512bf16::gemm_kron_bf16;
  return k;
}
// avx512bf16 with the bfloat16 GEMMs (and, with AMX-INT8, the int8 ones) on AMX tiles.
IsaKernels avx512amx_kernels() {
  IsaKernels k = avx512bf16_kernels();
  k.gemm_bf16 = avx512amx::gemm_bf16;
  k.gemm_kron_bf16 = avx512amx::gemm_kron_bf16;
  // AMX-INT8 is a CPUID bit of its own; its int8 GEMMs give the VNNI ones' bits (exact int32 sums).
  if (cpu::features().amx_int8) {
    k.gemm_i8 = avx512amx::gemm_i8;
    k.gemm_kron_i8 = avx512amx::gemm_kron_i8;
  }
  return k;
}
#else
// A build without the x86 kernels: cpu::available() is false for every other ISA.
IsaKernels avx2_kernels() { return ref_kernels(); }
IsaKernels avx512_kernels() { return ref_kernels(); }
IsaKernels avx512bf16_kernels() { return ref_kernels(); }
IsaKernels avx512amx_kernels() { return ref_kernels(); }
#endif

struct Tables {
  IsaKernels ref = ref_kernels(), avx2 = avx2_kernels(), avx512 = avx512_kernels(),
             avx512bf16 = avx512bf16_kernels(), avx512amx = avx512amx_kernels();
};

}  // namespace

const IsaKernels& isa_kernels(cpu::Isa isa) {
  static const Tables t;
  switch (isa) {
    case cpu::Isa::Avx512Amx: return t.avx512amx;
    case cpu::Isa::Avx512Bf16: return t.avx512bf16;
    case cpu::Isa::Avx512: return t.avx512;
    case cpu::Isa::Avx2: return t.avx2;
    case cpu::Isa::Ref: break;
  }
  return t.ref;
}

const IsaKernels& isa_kernels() {
  static const IsaKernels& t = isa_kernels(cpu::selected_isa());
  return t;
}

// Family entry points: an explicit ISA (tests, a PackedMatrix's own ISA) or the process's.

void pool_rows(cpu::Isa isa, const float* table, int64_t dim, const int64_t* rows, int64_t n,
               float scale, float* out) {
  isa_kernels(isa).pool_rows(table, dim, rows, n, scale, out);
}
void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
               float* out) {
  isa_kernels().pool_rows(table, dim, rows, n, scale, out);
}
void pool_rows_half(cpu::Isa isa, const uint16_t* table, bool bf16, int64_t dim, const int64_t* rows,
                    int64_t n, float scale, float* out) {
  isa_kernels(isa).pool_rows_half(table, bf16, dim, rows, n, scale, out);
}
void pool_rows_half(const uint16_t* table, bool bf16, int64_t dim, const int64_t* rows, int64_t n,
                    float scale, float* out) {
  isa_kernels().pool_rows_half(table, bf16, dim, rows, n, scale, out);
}

void pool_rows_int8(cpu::Isa isa, const int8_t* table, const float* scales, int64_t dim,
                    const int64_t* rows, int64_t n, float scale, float* out) {
  isa_kernels(isa).pool_rows_int8(table, scales, dim, rows, n, scale, out);
}
void pool_rows_int8(const int8_t* table, const float* scales, int64_t dim, const int64_t* rows,
                    int64_t n, float scale, float* out) {
  isa_kernels().pool_rows_int8(table, scales, dim, rows, n, scale, out);
}

void layernorm_rows(cpu::Isa isa, const float* x, int64_t rows, int64_t d, const float* w,
                    const float* b, float eps, float* y) {
  isa_kernels(isa).layernorm_rows(x, rows, d, w, b, eps, y);
}
void layernorm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps,
                    float* y) {
  isa_kernels().layernorm_rows(x, rows, d, w, b, eps, y);
}

void cross_rows(cpu::Isa isa, const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y) {
  isa_kernels(isa).cross_rows(x0, xl, rows, d, w, b, y);
}
void cross_rows(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y) {
  isa_kernels().cross_rows(x0, xl, rows, d, w, b, y);
}

void act_inplace(cpu::Isa isa, float* x, int64_t n, Act a) {
  if (a == Act::Identity || n <= 0) return;
  isa_kernels(isa).act_inplace(x, n, a);
}
void act_inplace(float* x, int64_t n, Act a) {
  if (a == Act::Identity || n <= 0) return;
  isa_kernels().act_inplace(x, n, a);
}

void softmax_rows(cpu::Isa isa, float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (rows <= 0 || cols <= 0) return;
  isa_kernels(isa).softmax_rows(x, rows, cols, ld);
}
void softmax_rows(float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (rows <= 0 || cols <= 0) return;
  isa_kernels().softmax_rows(x, rows, cols, ld);
}

void kron_panel(cpu::Isa isa, const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,
                int64_t l, int64_t rows, bool with_h, float* P, int64_t ldp) {
  isa_kernels(isa).kron_panel(x, ldx, m, h, ldh, l, rows, with_h, P, ldp);
}
void kron_panel(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                int64_t rows, bool with_h, float* P, int64_t ldp) {
  isa_kernels().kron_panel(x, ldx, m, h, ldh, l, rows, with_h, P, ldp);
}

void field_attention(cpu::Isa isa, float* s, const float* z, int64_t rows, int64_t t1, int64_t t2,
                     int64_t n, float* out) {
  isa_kernels(isa).field_attention(s, z, rows, t1, t2, n, out);
}
void field_attention(float* s, const float* z, int64_t rows, int64_t t1, int64_t t2, int64_t n,
                     float* out) {
  isa_kernels().field_attention(s, z, rows, t1, t2, n, out);
}

void field_mix(cpu::Isa isa, const float* W, const float* T, int64_t rows, int64_t t, int64_t c,
               const float* bias, bool accumulate, float* y) {
  isa_kernels(isa).field_mix(W, T, rows, t, c, bias, accumulate, y);
}
void field_mix(const float* W, const float* T, int64_t rows, int64_t t, int64_t c, const float* bias,
               bool accumulate, float* y) {
  isa_kernels().field_mix(W, T, rows, t, c, bias, accumulate, y);
}

void dwconv_rows(cpu::Isa isa, const float* x, int64_t L, int64_t n, const float* K, int64_t k,
                 float* y) {
  isa_kernels(isa).dwconv_rows(x, L, n, K, k, y);
}
void dwconv_rows(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  isa_kernels().dwconv_rows(x, L, n, K, k, y);
}
void dwconv_mean(cpu::Isa isa, const float* x, int64_t L, int64_t n, const float* K, int64_t k,
                 float* y) {
  isa_kernels(isa).dwconv_mean(x, L, n, K, k, y);
}
void dwconv_mean(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  isa_kernels().dwconv_mean(x, L, n, K, k, y);
}

void attention_rows(cpu::Isa isa, const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H,
                    float scale, float* A, int64_t lda, float* scratch) {
  if (L <= 0) return;
  isa_kernels(isa).attention_rows(qkv, ldq, L, d, H, scale, A, lda, scratch);
}
void attention_rows(const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H, float scale,
                    float* A, int64_t lda, float* scratch) {
  if (L <= 0) return;
  isa_kernels().attention_rows(qkv, ldq, L, d, H, scale, A, lda, scratch);
}

void kfatt_scores(cpu::Isa isa, const float* q, const float* K, int64_t ldk, int64_t n, int64_t dh,
                  float scale, float* out) {
  if (n <= 0) return;
  isa_kernels(isa).kfatt_scores(q, K, ldk, n, dh, scale, out);
}
void kfatt_scores(const float* q, const float* K, int64_t ldk, int64_t n, int64_t dh, float scale,
                  float* out) {
  if (n <= 0) return;
  isa_kernels().kfatt_scores(q, K, ldk, n, dh, scale, out);
}
void kfatt_wsum(cpu::Isa isa, const float* w, const float* V, int64_t ldv, int64_t n, int64_t dh,
                float* acc) {
  if (n <= 0 || dh <= 0) return;
  isa_kernels(isa).kfatt_wsum(w, V, ldv, n, dh, acc);
}
void kfatt_wsum(const float* w, const float* V, int64_t ldv, int64_t n, int64_t dh, float* acc) {
  if (n <= 0 || dh <= 0) return;
  isa_kernels().kfatt_wsum(w, V, ldv, n, dh, acc);
}

void gru_gates(cpu::Isa isa, const float* gi, const float* gh, const float* att, int64_t rows, int64_t h,
               float* state) {
  if (rows <= 0 || h <= 0) return;
  isa_kernels(isa).gru_gates(gi, gh, att, rows, h, state);
}
void gru_gates(const float* gi, const float* gh, const float* att, int64_t rows, int64_t h,
               float* state) {
  if (rows <= 0 || h <= 0) return;
  isa_kernels().gru_gates(gi, gh, att, rows, h, state);
}

}  // namespace dpn::kernels
