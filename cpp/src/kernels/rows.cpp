#include "kernels/rows.h"

#include <cmath>

namespace dpn::kernels {

void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
               float* out) {
  for (int64_t j = 0; j < dim; ++j) out[j] = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    const float* t = table + rows[k] * dim;
    for (int64_t j = 0; j < dim; ++j) out[j] += t[j];
  }
  if (scale != 1.0f)
    for (int64_t j = 0; j < dim; ++j) out[j] *= scale;
}

void layernorm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b,
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

void cross_rows(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
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

}  // namespace dpn::kernels
