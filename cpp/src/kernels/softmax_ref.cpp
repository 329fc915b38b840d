// Reference row softmax (softmax.h): the oracle of softmax_avx2.cpp / softmax_avx512.cpp.
#include <algorithm>
#include <cmath>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void softmax_rows(float* x, int64_t rows, int64_t cols, int64_t ld) {
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

}  // namespace dpn::kernels::ref
