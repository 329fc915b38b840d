// Reference dynamic depthwise convolution and its mean (dwconv.h): the oracle of the vector versions.
#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void dwconv_rows(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  const int64_t h = k / 2;
  for (int64_t i = 0; i < L; ++i) {
    float* yi = y + i * n;
    for (int64_t j = 0; j < n; ++j) yi[j] = 0.0f;
    for (int64_t t = 0; t < k; ++t) {
      const int64_t p = i + t - h;
      if (p < 0 || p >= L) continue;
      const float* xp = x + p * n;
      const float* kt = K + t * n;
      for (int64_t j = 0; j < n; ++j) {
        const float prod = kt[j] * xp[j];
        yi[j] = yi[j] + prod;
      }
    }
  }
}

void dwconv_mean(const float* x, int64_t L, int64_t n, const float* K, int64_t k, float* y) {
  const int64_t h = k / 2;
  for (int64_t j = 0; j < n; ++j) {
    if (L <= 0) {
      y[j] = 0.0f;
      continue;
    }
    float S = 0.0f;
    for (int64_t i = 0; i < L; ++i) S = S + x[i * n + j];
    float acc = K[h * n + j] * S, P = 0.0f, Q = 0.0f;
    for (int64_t o = 1; o <= h && o < L; ++o) {
      P = P + x[(o - 1) * n + j];
      Q = Q + x[(L - o) * n + j];
      const float wp = K[(h + o) * n + j] * (S - P);
      acc = acc + wp;
      const float wq = K[(h - o) * n + j] * (S - Q);
      acc = acc + wq;
    }
    y[j] = acc * (1.0f / static_cast<float>(L));
  }
}

}  // namespace dpn::kernels::ref
