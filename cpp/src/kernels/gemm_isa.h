// Declarations shared by the per-ISA kernel files (GEMM, rows_*.cpp). Deliberately minimal: a file compiled with ISA
// flags must not instantiate inline functions or templates with external linkage (the linker could
// keep its AVX copy for the whole program), so ISA files use only intrinsics, their own
// internal-linkage helpers, and out-of-line functions defined in baseline files.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/act.h"

namespace dpn::kernels {

// A per-thread, 64-byte aligned buffer of at least `floats` floats (grown, never shrunk; throws
// std::bad_alloc). Defined in gemm.cpp (baseline code). Not reentrant: one GEMM at a time per thread.
float* thread_scratch(size_t floats);

void gemm_avx2(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
               const float* bias, Act act, float* C, int64_t ldc);
void gemm_avx512(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp, int64_t N,
                 const float* bias, Act act, float* C, int64_t ldc);
void gemm_kron_avx512(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,
                      int64_t l, bool with_h, int64_t M, const float* Bp, int64_t N,
                      const float* bias, Act act, float* C, int64_t ldc);

// Row / elementwise kernels per ISA (rows_ref.cpp, rows_avx2.cpp, rows_avx512.cpp), called by the
// dispatchers in rows.cpp, act.cpp and kron.cpp; same contracts as rows.h, act.h and kron.h.
#define DPN_ROW_KERNELS(SFX)                                                                      \
  void pool_rows_##SFX(const float* table, int64_t dim, const int64_t* rows, int64_t n,          \
                       float scale, float* out);                                                 \
  void layernorm_rows_##SFX(const float* x, int64_t rows, int64_t d, const float* w,             \
                            const float* b, float eps, float* y);                                \
  void cross_rows_##SFX(const float* x0, const float* xl, int64_t rows, int64_t d,               \
                        const float* w, const float* b, float* y);                               \
  void act_inplace_##SFX(float* x, int64_t n, Act a);                                            \
  void softmax_rows_##SFX(float* x, int64_t rows, int64_t cols, int64_t ld);                     \
  void kron_panel_##SFX(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,     \
                        int64_t l, int64_t rows, bool with_h, float* P, int64_t ldp);
DPN_ROW_KERNELS(ref)
DPN_ROW_KERNELS(avx2)
DPN_ROW_KERNELS(avx512)
#undef DPN_ROW_KERNELS

}  // namespace dpn::kernels
