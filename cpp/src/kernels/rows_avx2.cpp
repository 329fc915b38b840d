// AVX2 row and elementwise kernels (pool, layernorm, cross, activations, softmax, Kronecker
// panel): 8 floats per vector, maskload/maskstore for any width. Against rows_ref.cpp: the same
// bits for pool/relu/kron_panel (and for cross given the row's dot product); layernorm/cross row
// sums use 16 lane partial sums (two vectors) and a fixed tree (the same bits as rows_avx512.cpp;
// no FMA contraction: built with -ffp-contract=off), so they round differently from the
// reference's in-order sums; sigmoid/tanh/softmax within a few ulp (Cephes exp, vecmath_avx2.h).
// Compiled with -mavx2 -mfma; only called after the runtime check (cpu::available(Isa::Avx2)).
// See gemm_isa.h for what this file must not use.
#include <immintrin.h>

#include "kernels/gemm_isa.h"
#include "kernels/vecmath_avx2.h"

namespace dpn::kernels {

namespace {

constexpr int64_t kW = 8;

inline __m256 mload(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }

// Σ_j x[j]: lane j % 16 partial sums, then the fixed tree (tree_sum16).
inline float vsum16(const float* x, int64_t d) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 2 * kW <= d; j += 2 * kW) {
    lo = _mm256_add_ps(lo, _mm256_loadu_ps(x + j));
    hi = _mm256_add_ps(hi, _mm256_loadu_ps(x + j + kW));
  }
  if (j < d) {
    lo = _mm256_add_ps(lo, mload(x + j, mask8(d - j)));
    hi = _mm256_add_ps(hi, mload(x + j + kW, mask8(d - j - kW)));
  }
  return tree_sum16(lo, hi);
}

// Σ_j (x[j] − c)², in the same order (masked lanes add +0).
inline float vsumsq16(const float* x, int64_t d, float c) {
  const __m256 vc = _mm256_set1_ps(c);
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 2 * kW <= d; j += 2 * kW) {
    const __m256 a = _mm256_sub_ps(_mm256_loadu_ps(x + j), vc);
    const __m256 b = _mm256_sub_ps(_mm256_loadu_ps(x + j + kW), vc);
    lo = _mm256_add_ps(lo, _mm256_mul_ps(a, a));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(b, b));
  }
  if (j < d) {
    const __m256i m0 = mask8(d - j), m1 = mask8(d - j - kW);
    const __m256 a = _mm256_and_ps(_mm256_sub_ps(mload(x + j, m0), vc), _mm256_castsi256_ps(m0));
    const __m256 b =
        _mm256_and_ps(_mm256_sub_ps(mload(x + j + kW, m1), vc), _mm256_castsi256_ps(m1));
    lo = _mm256_add_ps(lo, _mm256_mul_ps(a, a));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(b, b));
  }
  return tree_sum16(lo, hi);
}

// Σ_j x[j]·y[j], in the same order.
inline float vdot16(const float* x, const float* y, int64_t d) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 2 * kW <= d; j += 2 * kW) {
    lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
    hi = _mm256_add_ps(hi,
                       _mm256_mul_ps(_mm256_loadu_ps(x + j + kW), _mm256_loadu_ps(y + j + kW)));
  }
  if (j < d) {
    const __m256i m0 = mask8(d - j), m1 = mask8(d - j - kW);
    lo = _mm256_add_ps(lo, _mm256_mul_ps(mload(x + j, m0), mload(y + j, m0)));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(mload(x + j + kW, m1), mload(y + j + kW, m1)));
  }
  return tree_sum16(lo, hi);
}

// Columns [j0, j0 + 8·V) (the last vector masked by `tail` when Masked) of the pooled rows.
template <int V, bool Masked>
inline void pool_block(const float* table, int64_t dim, const int64_t* rows, int64_t n,
                       float scale, float* out, __m256i tail) {
  __m256 acc[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) acc[v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < n; ++k) {
    const float* t = table + rows[k] * dim;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      acc[v] = _mm256_add_ps(acc[v], !Masked || v + 1 < V ? _mm256_loadu_ps(t + v * kW)
                                                          : mload(t + v * kW, tail));
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

// dst[i] = s · src[i] (or a copy when !scaled), i < n.
inline void scale_copy(const float* src, int64_t n, float s, bool scaled, float* dst) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const __m256 v = _mm256_loadu_ps(src + i);
    _mm256_storeu_ps(dst + i, scaled ? _mm256_mul_ps(vs, v) : v);
  }
  if (i < n) {
    const __m256i m = mask8(n - i);
    const __m256 v = mload(src + i, m);
    _mm256_maskstore_ps(dst + i, m, scaled ? _mm256_mul_ps(vs, v) : v);
  }
}

template <class F>
inline void map_inplace(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    const __m256 a = f(_mm256_loadu_ps(x + i)), b = f(_mm256_loadu_ps(x + i + kW));
    _mm256_storeu_ps(x + i, a);
    _mm256_storeu_ps(x + i + kW, b);
  }
  for (; i < n; i += kW) {
    const __m256i m = mask8(n - i);
    _mm256_maskstore_ps(x + i, m, f(mload(x + i, m)));
  }
}

inline float hmax(__m256 v) {
  __m128 u = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  u = _mm_max_ps(u, _mm_movehl_ps(u, u));
  return _mm_cvtss_f32(_mm_max_ss(u, _mm_shuffle_ps(u, u, 1)));
}

inline float hsum(__m256 v) {
  __m128 u = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  u = _mm_add_ps(u, _mm_movehl_ps(u, u));
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

}  // namespace

void pool_rows_avx2(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
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

void layernorm_rows_avx2(const float* x, int64_t rows, int64_t d, const float* w, const float* b,
                         float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    const float mean = vsum16(xr, d) / static_cast<float>(d);
    const float v = vsumsq16(xr, d, mean);
    const float rstd =
        1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(v / static_cast<float>(d) + eps)));
    const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    int64_t j = 0;
    for (; j + kW <= d; j += kW) {
      const __m256 c = _mm256_sub_ps(_mm256_loadu_ps(xr + j), vm);
      _mm256_storeu_ps(yr + j, _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(c, vr), _mm256_loadu_ps(w + j)),
                                             _mm256_loadu_ps(b + j)));
    }
    if (j < d) {
      const __m256i m = mask8(d - j);
      const __m256 c = _mm256_sub_ps(mload(xr + j, m), vm);
      _mm256_maskstore_ps(yr + j, m, _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(c, vr), mload(w + j, m)),
                                                   mload(b + j, m)));
    }
  }
}

void cross_rows_avx2(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                     const float* b, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = x0 + r * d;
    const float* l = xl + r * d;
    float* o = y + r * d;
    const __m256 s = _mm256_set1_ps(vdot16(l, w, d));
    int64_t j = 0;
    for (; j + kW <= d; j += kW)
      _mm256_storeu_ps(o + j, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(a + j), s),
                                                           _mm256_loadu_ps(b + j)),
                                             _mm256_loadu_ps(l + j)));
    if (j < d) {
      const __m256i m = mask8(d - j);
      _mm256_maskstore_ps(o + j, m, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(mload(a + j, m), s),
                                                                mload(b + j, m)),
                                                  mload(l + j, m)));
    }
  }
}

void act_inplace_avx2(float* x, int64_t n, Act a) {
  switch (a) {
    case Act::Identity: return;
    case Act::Relu: {
      // relu() of act.h: max(+0, x) returns x for NaN; + 0 turns -0 into +0.
      const __m256 z = _mm256_setzero_ps();
      return map_inplace(x, n, [z](__m256 v) { return _mm256_add_ps(_mm256_max_ps(z, v), z); });
    }
    case Act::Sigmoid: return map_inplace(x, n, [](__m256 v) { return vsigmoid(v); });
    case Act::Tanh: return map_inplace(x, n, [](__m256 v) { return vtanh(v); });
  }
}

void softmax_rows_avx2(float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (cols <= 0) return;
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * ld;
    __m256 mx = ninf;
    for (int64_t j = 0; j < cols; j += kW) {
      const __m256i m = mask8(cols - j);
      mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, mload(v + j, m), _mm256_castsi256_ps(m)));
    }
    const __m256 vmx = _mm256_set1_ps(hmax(mx));
    // exp(x − max); x − max is NaN exactly when the row holds a NaN or +inf (or max is -inf):
    // then the reference's sum is NaN and so is every output.
    __m256 s = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int64_t j = 0; j < cols; j += kW) {
      const __m256i m = mask8(cols - j);
      const __m256 mf = _mm256_castsi256_ps(m);
      const __m256 t = _mm256_sub_ps(mload(v + j, m), vmx);
      bad = _mm256_or_ps(bad, _mm256_and_ps(mf, _mm256_cmp_ps(t, t, _CMP_UNORD_Q)));
      const __m256 e = _mm256_and_ps(mf, exp_nonpos(t));
      _mm256_maskstore_ps(v + j, m, e);
      s = _mm256_add_ps(s, e);
    }
    const __m256 inv = _mm256_movemask_ps(bad) ? _mm256_set1_ps(__builtin_nanf(""))
                                               : _mm256_set1_ps(1.0f / hsum(s));
    for (int64_t j = 0; j < cols; j += kW) {
      const __m256i m = mask8(cols - j);
      _mm256_maskstore_ps(v + j, m, _mm256_mul_ps(mload(v + j, m), inv));
    }
  }
}

void kron_panel_avx2(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,
                     int64_t l, int64_t rows, bool with_h, float* P, int64_t ldp) {
  for (int64_t b = 0; b < rows; ++b) {
    const float* xb = x + b * ldx;
    const float* hb = h + b * ldh;
    float* pb = P + b * ldp;
    scale_copy(xb, m, 1.0f, false, pb);
    for (int64_t k = 0; k < l; ++k) scale_copy(xb, m, hb[k], true, pb + (k + 1) * m);
    if (with_h) scale_copy(hb, l, 1.0f, false, pb + (l + 1) * m);
  }
}

}  // namespace dpn::kernels
