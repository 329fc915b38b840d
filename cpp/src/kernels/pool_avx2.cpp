// AVX2 embedding pooling (rows.h), float32 / float16 / bfloat16 / int8 rows: 8 floats per vector, masked
// loads/stores only for the ragged last vector. The same bits as pool_ref.cpp (sums in the same order
// per column). Compiled with -mavx2 -mfma -mf16c -ffp-contract=off; only called after the runtime check
// (cpu::available(Isa::Avx2)). See isa_kernels.h for what this file must not use.
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels::avx2 {

namespace {

constexpr int64_t kW = 8;

// 8 values of a float32 / float16 / bfloat16 row as floats (widening is exact). The tail form
// reads only the first `last` values (`tail` is their float mask), the rest as zero.
// kScaled: every row has its own float32 scale, multiplied into each value loaded (int8 rows).
struct LoadF32 {
  using T = float;
  static constexpr bool kScaled = false;
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 load(const float* p, __m256i tail, int64_t) { return mload(p, tail); }
};
// 16-bit lanes have no masked load in AVX2: the ragged tail goes through a zeroed buffer.
inline __m128i load_tail16(const uint16_t* p, int64_t last) {
  alignas(16) uint16_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < last; ++i) buf[i] = p[i];
  return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
}
struct LoadF16 {
  using T = uint16_t;
  static constexpr bool kScaled = false;
  static __m256 load(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
  static __m256 load(const uint16_t* p, __m256i, int64_t last) {
    return _mm256_cvtph_ps(load_tail16(p, last));
  }
};
struct LoadBF16 {
  using T = uint16_t;
  static constexpr bool kScaled = false;
  static __m256 widen(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static __m256 load(const uint16_t* p) { return widen(_mm_loadu_si128((const __m128i*)p)); }
  static __m256 load(const uint16_t* p, __m256i, int64_t last) { return widen(load_tail16(p, last)); }
};

// int8 rows: 8 values sign-extended to int32, then converted (exact); the tail through a zeroed buffer.
struct LoadI8 {
  using T = int8_t;
  static constexpr bool kScaled = true;
  static __m256 widen(__m128i q) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)); }
  static __m256 load(const int8_t* p) { return widen(_mm_loadl_epi64((const __m128i*)p)); }
  static __m256 load(const int8_t* p, __m256i, int64_t last) {
    alignas(16) int8_t buf[16] = {0};
    for (int64_t i = 0; i < last; ++i) buf[i] = p[i];
    return widen(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
  }
};

// Columns [j0, j0 + 8·V) (the last vector masked by `tail` when Masked) of the pooled rows.
template <int V, bool Masked, class L>
inline void pool_block(const typename L::T* table, const float* scales, int64_t dim, const int64_t* rows,
                       int64_t n, float scale, float* out, __m256i tail, int64_t last) {
  __m256 acc[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) acc[v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < n; ++k) {
    const typename L::T* t = table + rows[k] * dim;
    // One multiply per value, then the sum: the bits of pool_rows over the dequantized row.
    const __m256 s = L::kScaled ? _mm256_set1_ps(scales[rows[k]]) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      __m256 x = !Masked || v + 1 < V ? L::load(t + v * kW) : L::load(t + v * kW, tail, last);
      if constexpr (L::kScaled) x = _mm256_mul_ps(x, s);
      acc[v] = _mm256_add_ps(acc[v], x);
    }
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

template <class L>
void pool_rows_t(const typename L::T* table, const float* scales, int64_t dim, const int64_t* rows,
                 int64_t n, float scale, float* out) {
  for (int64_t j0 = 0; j0 < dim; j0 += 4 * kW) {
    const int64_t rem = dim - j0;
    const int v = rem >= 4 * kW ? 4 : int((rem + kW - 1) / kW);
    const int64_t last = rem - (v - 1) * kW;
    const __m256i tail = mask8(last);
    const typename L::T* t = table + j0;
    float* o = out + j0;
    // maskload/maskstore cost more than plain moves: only the ragged last vector uses them.
    switch (v * 2 + (last < kW)) {
      case 9: pool_block<4, true, L>(t, scales, dim, rows, n, scale, o, tail, last); break;
      case 8: pool_block<4, false, L>(t, scales, dim, rows, n, scale, o, tail, last); break;
      case 7: pool_block<3, true, L>(t, scales, dim, rows, n, scale, o, tail, last); break;
      case 6: pool_block<3, false, L>(t, scales, dim, rows, n, scale, o, tail, last); break;
      case 5: pool_block<2, true, L>(t, scales, dim, rows, n, scale, o, tail, last); break;
      case 4: pool_block<2, false, L>(t, scales, dim, rows, n, scale, o, tail, last); break;
      case 3: pool_block<1, true, L>(t, scales, dim, rows, n, scale, o, tail, last); break;
      default: pool_block<1, false, L>(t, scales, dim, rows, n, scale, o, tail, last); break;
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

}  // namespace dpn::kernels::avx2
