// Reference GRU / AUGRU step (gru.h): the scalar oracle of gru_avx2.cpp / gru_avx512.cpp.
#include <cmath>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void gru_gates(const float* gi, const float* gh, const float* att, int64_t rows, int64_t h,
               float* state) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* a = gi + i * 3 * h;
    const float* b = gh + i * 3 * h;
    float* s = state + i * h;
    for (int64_t j = 0; j < h; ++j) {
      const float r = sigmoid(a[j] + b[j]);
      const float u = sigmoid(a[h + j] + b[h + j]);
      const float n = std::tanh(a[2 * h + j] + r * b[2 * h + j]);
      if (att) {
        const float ua = att[i] * u;
        s[j] = (1.0f - ua) * s[j] + ua * n;
      } else {
        s[j] = (1.0f - u) * n + u * s[j];
      }
    }
  }
}

}  // namespace dpn::kernels::ref
