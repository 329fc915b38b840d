// GEMM block sizes chosen once per process from the CPU's per-core caches (CPUID), for the fp32
// and bfloat16 GEMMs of every ISA. Baseline code: ISA files call gemm_blocks() but never
// instantiate anything from here (see kernels/isa_kernels.h).
//
// The blocked drivers stream a kc × nr slice of one packed B panel per row tile and keep an mc × kc
// block of A resident in L2. DPN_GEMM_BLOCKS ("kc,mc", e.g. "512,96": k per block and rows per
// block in float32 terms) overrides the choice for tuning and for the block-edge tests; cpu_info()
// reports what runs. (The AMX GEMM has fixed blocks of its own: gemm_bf16_amx.cpp.)
#pragma once

#include <cstdint>

namespace dpn::kernels {

enum class BlockFamily { F32Avx512 = 0, F32Avx2 = 1, Bf16Avx512 = 2 };

struct GemmBlocks {
  int64_t kc = 0;           // K per block (even for bfloat16: whole k-pairs)
  int64_t mc = 0;           // rows per block, a multiple of the family's tile rows
  const char* source = "";  // "cpuid", "default" (caches not reported) or "DPN_GEMM_BLOCKS"
};

// Decided at first call (thread-safe), then constant.
const GemmBlocks& gemm_blocks(BlockFamily family);

}  // namespace dpn::kernels
