// Declarations shared by the per-ISA GEMM files. Deliberately minimal: a file compiled with ISA
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

}  // namespace dpn::kernels
