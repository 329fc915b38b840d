// Per-thread scratch for kernels that block their operands (the AVX-512 Kronecker GEMM).
// Baseline code: ISA files call it but never instantiate it (see kernels/isa_kernels.h).
#pragma once

#include <cstddef>

namespace dpn::runtime {

// A per-thread, 64-byte aligned buffer of at least `floats` floats (grown, never shrunk; throws
// std::bad_alloc). Not reentrant: one user at a time per thread.
float* thread_scratch(size_t floats);

}  // namespace dpn::runtime
