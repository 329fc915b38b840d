// Reference attention core (attention.h): scalar, in order; the oracle of the vector versions.
#include <algorithm>
#include <cmath>

#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void attention_rows(const float* qkv, int64_t ldq, int64_t L, int64_t d, int64_t H, float scale,
                    float* A, int64_t lda, float* scratch) {
  const int64_t dh = d / H;
  float* s = scratch;
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t i = 0; i < L; ++i) {
      const float* q = qkv + i * ldq + h * dh;
      float mx = -INFINITY;
      for (int64_t j = 0; j < L; ++j) {
        const float* k = qkv + j * ldq + d + h * dh;
        float acc = 0.0f;
        for (int64_t e = 0; e < dh; ++e) acc += q[e] * k[e];
        s[j] = acc * scale;
        mx = std::max(mx, s[j]);
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < L; ++j) {
        s[j] = std::exp(s[j] - mx);
        sum += s[j];
      }
      const float inv = 1.0f / sum;
      float* a = A + i * lda + h * dh;
      for (int64_t e = 0; e < dh; ++e) a[e] = 0.0f;
      for (int64_t j = 0; j < L; ++j) {
        const float* v = qkv + j * ldq + 2 * d + h * dh;
        const float p = s[j] * inv;
        for (int64_t e = 0; e < dh; ++e) a[e] += p * v[e];
      }
    }
  }
}

}  // namespace dpn::kernels::ref
