// AVX2 embedding pooling (rows.h): 8 floats per vector, masked loads/stores only for the
// ragged last vector. The same bits as pool_ref.cpp (sums in the same order per column).
// Compiled with -mavx2 -mfma -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

constexpr int64_t kW = 8;

// Columns [j0, j0 + 8·V) (the last vector masked by `tail` when Masked) of the pooled rows.
template <int V, bool Masked>
inline void pool_block(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
                       float* out, __m256i tail) {
  __m256 acc[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) acc[v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < n; ++k) {
    const float* t = table + rows[k] * dim;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      acc[v] = _mm256_add_ps(
          acc[v], !Masked || v + 1 < V ? _mm256_loadu_ps(t + v * kW) : mload(t + v * kW, tail));
  }
  if (scale != 1.0f) {
    const __m256 s = _mm256_set1_ps(scale);
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[v] = _mm256_mul_ps(acc[v], s);
  }
#pragma GCC unroll 4
  for (int v = 0; v + 1 < V; ++v) _mm256_storeu_ps(out + v * kW, acc[v]);
  if (Masked)
    _mm256_maskstore_ps(out + (V - 1) * kW, tail, acc[V - 1]);
  else
    _mm256_storeu_ps(out + (V - 1) * kW, acc[V - 1]);
}

}  // namespace

void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
               float* out) {
  for (int64_t j0 = 0; j0 < dim; j0 += 4 * kW) {
    const int64_t rem = dim - j0;
    const int v = rem >= 4 * kW ? 4 : int((rem + kW - 1) / kW);
    const int64_t last = rem - (v - 1) * kW;
    const __m256i tail = mask8(last);
    // maskload/maskstore cost more than plain moves: only the ragged last vector uses them.
    switch (v * 2 + (last < kW)) {
      case 9: pool_block<4, true>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      case 8: pool_block<4, false>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      case 7: pool_block<3, true>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      case 6: pool_block<3, false>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      case 5: pool_block<2, true>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      case 4: pool_block<2, false>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      case 3: pool_block<1, true>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      default: pool_block<1, false>(table + j0, dim, rows, n, scale, out + j0, tail); break;
    }
  }
}

}  // namespace dpn::kernels::avx2
