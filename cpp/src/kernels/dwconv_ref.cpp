// Reference dynamic depthwise convolution (dwconv.h): the oracle of the vector versions.
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

}  // namespace dpn::kernels::ref
