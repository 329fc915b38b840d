#include "kernels/blocking.h"

#include <cstdio>
#include <cstdlib>

#include "cpu/cpu_features.h"

namespace dpn::kernels {

namespace {

int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

// Tile shape of each family (the drivers' kMR × kNR) and its element size.
struct Shape {
  int64_t mr, nr, elem;
};
Shape shape_of(BlockFamily f) {
  switch (f) {
    case BlockFamily::F32Avx512: return {12, 32, 4};
    case BlockFamily::F32Avx2: return {6, 16, 4};
    case BlockFamily::Bf16Avx512: return {12, 32, 2};
  }
  return {12, 32, 4};
}

// "kc,mc" from DPN_GEMM_BLOCKS, rounded to whole tiles (and k-pairs); false when unset or malformed.
bool from_env(const Shape& s, GemmBlocks* out) {
  const char* env = std::getenv("DPN_GEMM_BLOCKS");
  if (!env || !*env) return false;
  long long kc = 0, mc = 0;
  if (std::sscanf(env, "%lld,%lld", &kc, &mc) != 2 || kc < 2 || mc < 1) return false;
  out->kc = clamp(kc, 2, 1 << 16) / 2 * 2;
  out->mc = clamp((mc + s.mr - 1) / s.mr * s.mr, s.mr, 1 << 12);
  out->source = "DPN_GEMM_BLOCKS";
  return true;
}

// The sizes tuned on Zen 4 (32 KiB L1d, 1 MiB L2): 768 × 72 in float32 (3 KiB of K per row; the
// same bytes, 1536 k, in bfloat16; 1024 fell off a cliff there, A rows 4 KiB apart aliasing in L1).
// A sweep on a Xeon with 48 KiB / 2 MiB (kc 128-1024, mc 48-252) found nothing better beyond noise,
// so larger caches keep them; a smaller L2 halves kc until the A block and one B slice fill at most
// half of it.
GemmBlocks choose(int64_t l2, const Shape& s) {
  GemmBlocks b;
  b.kc = 3072 / s.elem;
  b.mc = 72 / s.mr * s.mr;
  b.source = l2 > 0 ? "cpuid" : "default";
  const int64_t floor_kc = 1024 / s.elem;
  while (l2 > 0 && b.kc > floor_kc && (b.mc + s.nr) * b.kc * s.elem > l2 / 2) b.kc /= 2;
  b.kc = b.kc / 2 * 2;
  return b;
}

GemmBlocks decide(BlockFamily family) {
  const Shape s = shape_of(family);
  GemmBlocks b;
  if (!from_env(s, &b)) return choose(cpu::features().l2_bytes, s);
  if (family == BlockFamily::Bf16Avx512) b.kc *= 2;  // DPN_GEMM_BLOCKS counts float32 k
  return b;
}

}  // namespace

const GemmBlocks& gemm_blocks(BlockFamily family) {
  static const GemmBlocks table[3] = {decide(BlockFamily::F32Avx512), decide(BlockFamily::F32Avx2),
                                      decide(BlockFamily::Bf16Avx512)};
  return table[int(family)];
}

}  // namespace dpn::kernels
