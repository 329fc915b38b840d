// Reference field attention (field_attn.h): the oracle of the vector versions.
#include "kernels/isa_kernels.h"

#include <cmath>

namespace dpn::kernels::ref {

namespace {

// For one row, column i of s [t2, t1] becomes softmax over its t2 entries.
void field_attention_weights(float* s, int64_t t1, int64_t t2) {
  for (int64_t i = 0; i < t1; ++i) {
    float mx = s[i];
    for (int64_t j = 1; j < t2; ++j) mx = std::fmax(mx, s[j * t1 + i]);
    float sum = 0.0f;
    for (int64_t j = 0; j < t2; ++j) {
      const float e = std::exp(s[j * t1 + i] - mx);
      s[j * t1 + i] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < t2; ++j) s[j * t1 + i] *= inv;
  }
}

}  // namespace

void field_attention(float* s, const float* z, int64_t rows, int64_t t1, int64_t t2, int64_t n,
                     float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * t2 * t1;
    const float* zr = z + r * t2 * n;
    float* o = out + r * t1 * n;
    field_attention_weights(sr, t1, t2);
    for (int64_t i = 0; i < t1; ++i) {
      float* oi = o + i * n;
      for (int64_t k = 0; k < n; ++k) oi[k] = sr[i] * zr[k];
      for (int64_t j = 1; j < t2; ++j) {
        const float w = sr[j * t1 + i];
        const float* zj = zr + j * n;
        for (int64_t k = 0; k < n; ++k) oi[k] = oi[k] + w * zj[k];
      }
    }
  }
}

}  // namespace dpn::kernels::ref
