// The KFAtt decoder's inner loops (ops/kfatt.cpp, docs/format.md §5d): one head's scaled dot
// products of a query with n behaviour keys, and a weighted sum of n value rows.
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// out[t] = scale · Σ_{e<dh} q[e]·K[t·ldk + e] for t < n.
// The vector versions use fused multiply-adds and sum lanes in another order: they match the
// reference within float rounding (rtol ~1e-6 of Σ|q·k|), not bit for bit.
void kfatt_scores(const float* q, const float* K, int64_t ldk, int64_t n, int64_t dh, float scale,
                  float* out);
void kfatt_scores(cpu::Isa isa, const float* q, const float* K, int64_t ldk, int64_t n, int64_t dh,
                  float scale, float* out);

// acc[e] += Σ_{t<n} w[t]·V[t·ldv + e] for e < dh (t in order; the vector versions fuse each
// multiply-add, the reference rounds the product first).
void kfatt_wsum(const float* w, const float* V, int64_t ldv, int64_t n, int64_t dh, float* acc);
void kfatt_wsum(cpu::Isa isa, const float* w, const float* V, int64_t ldv, int64_t n, int64_t dh,
                float* acc);

}  // namespace dpn::kernels
