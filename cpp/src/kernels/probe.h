// Machine probes for the benchmark's roofline: the FMA peak and the read bandwidth, measured with
// the same ISA the GEMM kernels use. Not on any predict path.
#pragma once

#include <cstdint>

#include "cpu/cpu_features.h"

namespace dpn::kernels {

// Best-of-5 GFLOP/s of independent FMA chains on `threads` threads at once (fp32, `isa` vectors).
double probe_fma_gflops(cpu::Isa isa, int threads);
// Best-of-5 GB/s of summing a `mbytes` MiB buffer split between `threads` threads.
double probe_read_gbps(cpu::Isa isa, int threads, int64_t mbytes);

// Per-ISA loops (flop count / bytes done, for `iters` iterations or `n` floats).
double fma_loop_avx512(int64_t iters);
double fma_loop_avx2(int64_t iters);
float sum_avx512(const float* p, int64_t n);
float sum_avx2(const float* p, int64_t n);

}  // namespace dpn::kernels
