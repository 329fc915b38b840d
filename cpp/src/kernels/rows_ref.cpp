// Reference (portable, scalar) row and elementwise kernels (the engine's original code, unchanged:
// the golden outputs of the ref ISA depend on its exact rounding): the semantics every ISA version
// in rows_avx2.cpp / rows_avx512.cpp reproduces. Dispatch: rows.cpp, act.cpp, kron.cpp.
#include <algorithm>
#include <cmath>

#include "kernels/gemm_isa.h"

namespace dpn::kernels {

void pool_rows_ref(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
                   float* out) {
  for (int64_t j = 0; j < dim; ++j) out[j] = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    const float* t = table + rows[k] * dim;
    for (int64_t j = 0; j < dim; ++j) out[j] += t[j];
  }
  if (scale != 1.0f)
    for (int64_t j = 0; j < dim; ++j) out[j] *= scale;
}

void layernorm_rows_ref(const float* x, int64_t rows, int64_t d, const float* w, const float* b,
                        float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    // Two passes (mean, then centred squares): stable for rows with a large mean.
    float s = 0.0f;
    for (int64_t j = 0; j < d; ++j) s += xr[j];
    const float mean = s / static_cast<float>(d);
    float v = 0.0f;
    for (int64_t j = 0; j < d; ++j) {
      const float c = xr[j] - mean;
      v += c * c;
    }
    const float rstd = 1.0f / std::sqrt(v / static_cast<float>(d) + eps);
    for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
  }
}

void cross_rows_ref(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                    const float* b, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = x0 + r * d;
    const float* l = xl + r * d;
    float* o = y + r * d;
    float s = 0.0f;
    for (int64_t j = 0; j < d; ++j) s += l[j] * w[j];
    for (int64_t j = 0; j < d; ++j) o[j] = a[j] * s + b[j] + l[j];
  }
}

void act_inplace_ref(float* x, int64_t n, Act a) {
  switch (a) {
    case Act::Identity: return;
    case Act::Relu:
      for (int64_t i = 0; i < n; ++i) x[i] = relu(x[i]);
      return;
    case Act::Sigmoid:
      for (int64_t i = 0; i < n; ++i) x[i] = sigmoid(x[i]);
      return;
    case Act::Tanh:
      for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
      return;
  }
}

void softmax_rows_ref(float* x, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * ld;
    float mx = v[0];
    for (int64_t j = 1; j < cols; ++j) mx = std::max(mx, v[j]);
    float s = 0.0f;
    for (int64_t j = 0; j < cols; ++j) {
      v[j] = std::exp(v[j] - mx);
      s += v[j];
    }
    const float inv = 1.0f / s;
    for (int64_t j = 0; j < cols; ++j) v[j] *= inv;
  }
}

void kron_panel_ref(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                    int64_t rows, bool with_h, float* P, int64_t ldp) {
  for (int64_t b = 0; b < rows; ++b) {
    const float* xb = x + b * ldx;
    const float* hb = h + b * ldh;
    float* pb = P + b * ldp;
    for (int64_t i = 0; i < m; ++i) pb[i] = xb[i];
    for (int64_t k = 0; k < l; ++k) {
      const float s = hb[k];
      float* d = pb + (k + 1) * m;
      for (int64_t i = 0; i < m; ++i) d[i] = s * xb[i];
    }
    if (with_h) {
      float* d = pb + (l + 1) * m;
      for (int64_t k = 0; k < l; ++k) d[k] = hb[k];
    }
  }
}

}  // namespace dpn::kernels
