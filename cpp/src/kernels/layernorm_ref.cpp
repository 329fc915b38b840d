// Reference layernorm (rows.h): sums in order; the oracle of layernorm_avx2.cpp and
// layernorm_avx512.cpp. Its exact rounding is what the golden outputs of the ref ISA were made with.
#include <cmath>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void layernorm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps,
                    float* y) {
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

}  // namespace dpn::kernels::ref
