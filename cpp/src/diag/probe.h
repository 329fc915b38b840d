// Machine probes for the benchmark's roofline: the FMA peak and the read bandwidth, measured with
// the same ISA vectors the GEMM kernels use. Diagnostics only: on no predict path, built into the
// test/bench module (dpn_infer._testing), not the engine library.
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::diag {

// Best-of-5 GFLOP/s of independent FMA chains on `threads` threads at once (fp32, `isa` vectors).
double probe_fma_gflops(cpu::Isa isa, int threads);
// Best-of-5 GB/s of summing a `mbytes` MiB buffer split between `threads` threads.
double probe_read_gbps(cpu::Isa isa, int threads, int64_t mbytes);

// Per-ISA loops (probe_avx2.cpp, probe_avx512.cpp; compiled with that ISA's flags): flops done in
// `iters` iterations, and the sum of n floats.
namespace avx2 {
double fma_loop(int64_t iters);
float sum(const float* p, int64_t n);
}  // namespace avx2
namespace avx512 {
double fma_loop(int64_t iters);
float sum(const float* p, int64_t n);
}  // namespace avx512

}  // namespace dpn::diag
