#include "kernels/act.h"

#include <algorithm>

namespace dpn::kernels {

void act_inplace(float* x, int64_t n, Act a) {
  switch (a) {
    case Act::Identity: return;
    case Act::Relu:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
      return;
    case Act::Sigmoid:
      for (int64_t i = 0; i < n; ++i) x[i] = sigmoid(x[i]);
      return;
    case Act::Tanh:
      for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
      return;
  }
}

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

}  // namespace dpn::kernels
