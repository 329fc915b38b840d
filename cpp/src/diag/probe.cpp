// Probe drivers: run the per-ISA loops on `threads` threads at once, best of 5.
#include "diag/probe.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

#include "cpu/cpu_features.h"
#include "runtime/thread_pool.h"

namespace dpn::diag {

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Portable fallback: 8 scalar chains the compiler may vectorize with SSE2.
double fma_loop_ref(int64_t iters) {
  float a[32];
  for (int i = 0; i < 32; ++i) a[i] = 1.0f + 1e-7f * float(i);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 32; ++i) a[i] = a[i] * 0.999999f + 1e-6f;
  volatile float sink = a[0] + a[31];
  (void)sink;
  return double(iters) * 32 * 2;
}

float sum_ref(const float* p, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += p[i + j];
  float t = 0;
  for (float v : s) t += v;
  for (; i < n; ++i) t += p[i];
  return t;
}

// The probe loops of one ISA (the kernels' ISA seam in miniature: one place picks the code).
struct Loops {
  double (*fma_loop)(int64_t iters);
  float (*sum)(const float* p, int64_t n);
};

Loops loops(cpu::Isa isa) {
#if defined(DPN_HAVE_X86_KERNELS)
  if (isa == cpu::Isa::Avx512 || isa == cpu::Isa::Avx512Bf16 || isa == cpu::Isa::Avx512Amx)
    return {avx512::fma_loop, avx512::sum};
  if (isa == cpu::Isa::Avx2) return {avx2::fma_loop, avx2::sum};
#endif
  (void)isa;
  return {fma_loop_ref, sum_ref};
}

}  // namespace

double probe_fma_gflops(cpu::Isa isa, int threads) {
  threads = std::max(1, threads);
  const int64_t iters = 20'000'000;  // ~0.1 s per thread at ~100 GFLOP/s
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::atomic<double> flops{0};
    const double t0 = now();
    runtime::parallel_for(threads, threads, [&](int64_t) {
      const double f = loops(isa).fma_loop(iters);
      double cur = flops.load();
      while (!flops.compare_exchange_weak(cur, cur + f)) {
      }
    });
    best = std::max(best, flops.load() / (now() - t0) / 1e9);
  }
  return best;
}

double probe_read_gbps(cpu::Isa isa, int threads, int64_t mbytes) {
  threads = std::max(1, threads);
  const int64_t n = std::max<int64_t>(1, mbytes) * (int64_t(1) << 20) / int64_t(sizeof(float));
  std::vector<float> buf(size_t(n), 1.0f);
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<float> part(size_t(threads), 0.0f);
    const double t0 = now();
    runtime::parallel_for(threads, threads, [&](int64_t t) {
      const int64_t a = n * t / threads, b = n * (t + 1) / threads;
      part[size_t(t)] = loops(isa).sum(buf.data() + a, b - a);
    });
    best = std::max(best, double(n) * sizeof(float) / (now() - t0) / 1e9);
    for (float v : part) sink = sink + v;
  }
  return best;
}

}  // namespace dpn::diag
