// AVX-512 embedding pooling (rows.h), over float32, float16/bfloat16 or int8 tables widened
// (dequantized) as read: 16 floats per vector, masked loads/stores only for the ragged last vector. The
// same bits as pool_ref.cpp (sums in the same order per column). Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512dq -mfma -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx512)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels::avx512 {

namespace {

constexpr int64_t kW = 16;

// 16 values of a float32 / float16 / bfloat16 row as floats (widening is exact); masked: lanes
// outside `m` read as zero and touch no memory.
// kScaled: every row has its own float32 scale, multiplied into each value loaded (int8 rows).
struct LoadF32 {
  using T = float;
  static constexpr bool kScaled = false;
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 load(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct LoadF16 {
  using T = uint16_t;
  static constexpr bool kScaled = false;
  static __m512 load(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
  }
  static __m512 load(const uint16_t* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};
struct LoadBF16 {
  using T = uint16_t;
  static constexpr bool kScaled = false;
  static __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 load(const uint16_t* p) { return widen(_mm256_loadu_si256((const __m256i*)p)); }
  static __m512 load(const uint16_t* p, __mmask16 m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }
};

// int8 rows: 16 values sign-extended to int32, then converted (exact).
struct LoadI8 {
  using T = int8_t;
  static constexpr bool kScaled = true;
  static __m512 widen(__m128i q) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)); }
  static __m512 load(const int8_t* p) { return widen(_mm_loadu_si128((const __m128i*)p)); }
  static __m512 load(const int8_t* p, __mmask16 m) { return widen(_mm_maskz_loadu_epi8(m, p)); }
};

// Columns [j0, j0 + 16·V) (the last vector masked by `tail`) of the pooled rows.
template <int V, class L>
inline void pool_block(const typename L::T* table, const float* scales, int64_t dim, const int64_t* rows,
                       int64_t n, float scale, float* out, __mmask16 tail) {
  __m512 acc[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) acc[v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; ++k) {
    const typename L::T* t = table + rows[k] * dim;
    // One multiply per value, then the sum: the bits of pool_rows over the dequantized row.
    const __m512 s = L::kScaled ? _mm512_set1_ps(scales[rows[k]]) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      __m512 x = v + 1 < V ? L::load(t + v * kW) : L::load(t + v * kW, tail);
      if constexpr (L::kScaled) x = _mm512_mul_ps(x, s);
      acc[v] = _mm512_add_ps(acc[v], x);
    }
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

template <class L>
void pool_rows_t(const typename L::T* table, const float* scales, int64_t dim, const int64_t* rows,
                 int64_t n, float scale, float* out) {
  for (int64_t j0 = 0; j0 < dim; j0 += 4 * kW) {
    const int64_t rem = dim - j0;
    const int v = rem >= 4 * kW ? 4 : int((rem + kW - 1) / kW);
    const __mmask16 tail = mask16(rem - (v - 1) * kW);
    switch (v) {
      case 4: pool_block<4, L>(table + j0, scales, dim, rows, n, scale, out + j0, tail); break;
      case 3: pool_block<3, L>(table + j0, scales, dim, rows, n, scale, out + j0, tail); break;
      case 2: pool_block<2, L>(table + j0, scales, dim, rows, n, scale, out + j0, tail); break;
      default: pool_block<1, L>(table + j0, scales, dim, rows, n, scale, out + j0, tail); break;
    }
  }
}

}  // namespace

void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
               float* out) {
  pool_rows_t<LoadF32>(table, nullptr, dim, rows, n, scale, out);
}

void pool_rows_half(const uint16_t* table, bool bf16, int64_t dim, const int64_t* rows, int64_t n,
                    float scale, float* out) {
  if (bf16)
    pool_rows_t<LoadBF16>(table, nullptr, dim, rows, n, scale, out);
  else
    pool_rows_t<LoadF16>(table, nullptr, dim, rows, n, scale, out);
}

void pool_rows_int8(const int8_t* table, const float* scales, int64_t dim, const int64_t* rows,
                    int64_t n, float scale, float* out) {
  pool_rows_t<LoadI8>(table, scales, dim, rows, n, scale, out);
}

}  // namespace dpn::kernels::avx512
