// AVX-512 embedding pooling (rows.h): 16 floats per vector, masked loads/stores only for the
// ragged last vector. The same bits as pool_ref.cpp (sums in the same order per column).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -ffp-contract=off; only called
// after the runtime check (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must
// not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

constexpr int64_t kW = 16;

// Columns [j0, j0 + 16·V) (the last vector masked by `tail`) of the pooled rows.
template <int V>
inline void pool_block(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
                       float* out, __mmask16 tail) {
  __m512 acc[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) acc[v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; ++k) {
    const float* t = table + rows[k] * dim;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      acc[v] = _mm512_add_ps(
          acc[v], v + 1 < V ? _mm512_loadu_ps(t + v * kW) : _mm512_maskz_loadu_ps(tail, t + v * kW));
  }
  if (scale != 1.0f) {
    const __m512 s = _mm512_set1_ps(scale);
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[v] = _mm512_mul_ps(acc[v], s);
  }
#pragma GCC unroll 4
  for (int v = 0; v + 1 < V; ++v) _mm512_storeu_ps(out + v * kW, acc[v]);
  _mm512_mask_storeu_ps(out + (V - 1) * kW, tail, acc[V - 1]);
}

}  // namespace

void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
               float* out) {
  for (int64_t j0 = 0; j0 < dim; j0 += 4 * kW) {
    const int64_t rem = dim - j0;
    const int v = rem >= 4 * kW ? 4 : int((rem + kW - 1) / kW);
    const __mmask16 tail = mask16(rem - (v - 1) * kW);
    switch (v) {
      case 4: pool_block<4>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      case 3: pool_block<3>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      case 2: pool_block<2>(table + j0, dim, rows, n, scale, out + j0, tail); break;
      default: pool_block<1>(table + j0, dim, rows, n, scale, out + j0, tail); break;
    }
  }
}

}  // namespace dpn::kernels::avx512
