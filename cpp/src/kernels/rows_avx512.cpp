// AVX-512 row and elementwise kernels (pool, layernorm, cross, activations, softmax, Kronecker
// panel): 16 floats per vector, masked loads/stores for any width. Against rows_ref.cpp: the same
// bits for pool/relu/kron_panel (and for cross given the row's dot product); layernorm/cross row
// sums use 16 lane partial sums and a fixed tree (the same bits as rows_avx2.cpp; no FMA
// contraction: built with -ffp-contract=off), so they round differently from the reference's
// in-order sums; sigmoid/tanh/softmax within a few ulp (Cephes exp, vecmath_avx512.h).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma; only called after the runtime
// check (cpu::available(Isa::Avx512)). See gemm_isa.h for what this file must not use.
#include <immintrin.h>

#include "kernels/gemm_isa.h"
#include "kernels/vecmath_avx512.h"

namespace dpn::kernels {

namespace {

constexpr int64_t kW = 16;

// Σ_j x[j]: lane j % 16 partial sums, then the fixed tree (tree_sum16).
inline float vsum16(const float* x, int64_t d) {
  __m512 s = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + kW <= d; j += kW) s = _mm512_add_ps(s, _mm512_loadu_ps(x + j));
  if (j < d) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mask16(d - j), x + j));
  return tree_sum16(s);
}

// Σ_j (x[j] − c)², in the same order (masked lanes add +0).
inline float vsumsq16(const float* x, int64_t d, float c) {
  const __m512 vc = _mm512_set1_ps(c);
  __m512 s = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + kW <= d; j += kW) {
    const __m512 t = _mm512_sub_ps(_mm512_loadu_ps(x + j), vc);
    s = _mm512_add_ps(s, _mm512_mul_ps(t, t));
  }
  if (j < d) {
    const __mmask16 m = mask16(d - j);
    const __m512 t = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + j), vc);
    s = _mm512_add_ps(s, _mm512_mul_ps(t, t));
  }
  return tree_sum16(s);
}

// Σ_j x[j]·y[j], in the same order.
inline float vdot16(const float* x, const float* y, int64_t d) {
  __m512 s = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + kW <= d; j += kW)
    s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j)));
  if (j < d) {
    const __mmask16 m = mask16(d - j);
    s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j),
                                       _mm512_maskz_loadu_ps(m, y + j)));
  }
  return tree_sum16(s);
}

// Columns [j0, j0 + 16·V) (the last vector masked by `tail`) of the pooled rows.
template <int V>
inline void pool_block(const float* table, int64_t dim, const int64_t* rows, int64_t n,
                       float scale, float* out, __mmask16 tail) {
  __m512 acc[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) acc[v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; ++k) {
    const float* t = table + rows[k] * dim;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      acc[v] = _mm512_add_ps(acc[v], v + 1 < V ? _mm512_loadu_ps(t + v * kW)
                                                : _mm512_maskz_loadu_ps(tail, t + v * kW));
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

// dst[i] = s · src[i] (or a copy when !scaled), i < n.
inline void scale_copy(const float* src, int64_t n, float s, bool scaled, float* dst) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const __m512 v = _mm512_loadu_ps(src + i);
    _mm512_storeu_ps(dst + i, scaled ? _mm512_mul_ps(vs, v) : v);
  }
  if (i < n) {
    const __mmask16 m = mask16(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, src + i);
    _mm512_mask_storeu_ps(dst + i, m, scaled ? _mm512_mul_ps(vs, v) : v);
  }
}

template <class F>
inline void map_inplace(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    const __m512 a = f(_mm512_loadu_ps(x + i)), b = f(_mm512_loadu_ps(x + i + kW));
    _mm512_storeu_ps(x + i, a);
    _mm512_storeu_ps(x + i + kW, b);
  }
  for (; i < n; i += kW) {
    const __mmask16 m = mask16(n - i);
    _mm512_mask_storeu_ps(x + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

void pool_rows_avx512(const float* table, int64_t dim, const int64_t* rows, int64_t n,
                      float scale, float* out) {
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

void layernorm_rows_avx512(const float* x, int64_t rows, int64_t d, const float* w,
                           const float* b, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    const float mean = vsum16(xr, d) / static_cast<float>(d);
    const float v = vsumsq16(xr, d, mean);
    const float rstd =
        1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(v / static_cast<float>(d) + eps)));
    const __m512 vm = _mm512_set1_ps(mean), vr = _mm512_set1_ps(rstd);
    int64_t j = 0;
    for (; j + kW <= d; j += kW) {
      const __m512 c = _mm512_sub_ps(_mm512_loadu_ps(xr + j), vm);
      _mm512_storeu_ps(yr + j, _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(c, vr), _mm512_loadu_ps(w + j)),
                                             _mm512_loadu_ps(b + j)));
    }
    if (j < d) {
      const __mmask16 m = mask16(d - j);
      const __m512 c = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + j), vm);
      const __m512 o = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(c, vr), _mm512_maskz_loadu_ps(m, w + j)),
                                     _mm512_maskz_loadu_ps(m, b + j));
      _mm512_mask_storeu_ps(yr + j, m, o);
    }
  }
}

void cross_rows_avx512(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                       const float* b, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = x0 + r * d;
    const float* l = xl + r * d;
    float* o = y + r * d;
    const __m512 s = _mm512_set1_ps(vdot16(l, w, d));
    int64_t j = 0;
    for (; j + kW <= d; j += kW)
      _mm512_storeu_ps(o + j, _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(a + j), s),
                                                          _mm512_loadu_ps(b + j)),
                                            _mm512_loadu_ps(l + j)));
    if (j < d) {
      const __mmask16 m = mask16(d - j);
      const __m512 v = _mm512_add_ps(
          _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + j), s),
                        _mm512_maskz_loadu_ps(m, b + j)),
          _mm512_maskz_loadu_ps(m, l + j));
      _mm512_mask_storeu_ps(o + j, m, v);
    }
  }
}

void act_inplace_avx512(float* x, int64_t n, Act a) {
  switch (a) {
    case Act::Identity: return;
    case Act::Relu: {
      // relu() of act.h: max(+0, x) returns x for NaN; + 0 turns -0 into +0.
      const __m512 z = _mm512_setzero_ps();
      return map_inplace(x, n, [z](__m512 v) { return _mm512_add_ps(_mm512_max_ps(z, v), z); });
    }
    case Act::Sigmoid: return map_inplace(x, n, [](__m512 v) { return vsigmoid(v); });
    case Act::Tanh: return map_inplace(x, n, [](__m512 v) { return vtanh(v); });
  }
}

void softmax_rows_avx512(float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (cols <= 0) return;
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * ld;
    __m512 mx = ninf;
    for (int64_t j = 0; j < cols; j += kW)
      mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, mask16(cols - j), v + j));
    const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    // exp(x − max); x − max is NaN exactly when the row holds a NaN or +inf (or max is -inf):
    // then the reference's sum is NaN and so is every output.
    __m512 s = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int64_t j = 0; j < cols; j += kW) {
      const __mmask16 m = mask16(cols - j);
      const __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, v + j), vmx);
      bad |= _mm512_mask_cmp_ps_mask(m, t, t, _CMP_UNORD_Q);
      const __m512 e = _mm512_maskz_mov_ps(m, exp_nonpos(t));
      _mm512_mask_storeu_ps(v + j, m, e);
      s = _mm512_add_ps(s, e);
    }
    const __m512 inv = bad ? _mm512_set1_ps(__builtin_nanf(""))
                           : _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(s));
    for (int64_t j = 0; j < cols; j += kW) {
      const __mmask16 m = mask16(cols - j);
      _mm512_mask_storeu_ps(v + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, v + j), inv));
    }
  }
}

void kron_panel_avx512(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh,
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
