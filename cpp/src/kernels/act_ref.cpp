// Reference activations (act.h): the scalar kernels::apply semantics, the oracle of act_avx2.cpp /
// act_avx512.cpp.
#include <cmath>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void act_inplace(float* x, int64_t n, Act a) {
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

}  // namespace dpn::kernels::ref
