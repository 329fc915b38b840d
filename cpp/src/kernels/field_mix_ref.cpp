// Reference field mix (field_mix.h): the oracle of the vector versions.
#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void field_mix(const float* W, const float* T, int64_t rows, int64_t t, int64_t c, const float* bias,
               bool accumulate, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* Tr = T + r * t * c;
    float* yr = y + r * t * c;
    for (int64_t i = 0; i < t; ++i) {
      float* yi = yr + i * c;
      const float* wi = W + i * t;
      for (int64_t j = 0; j < c; ++j) {
        float acc = accumulate ? yi[j] : bias ? bias[j] : 0.0f;
        for (int64_t k = 0; k < t; ++k) acc = acc + wi[k] * Tr[k * c + j];
        yi[j] = acc;
      }
    }
  }
}

}  // namespace dpn::kernels::ref
