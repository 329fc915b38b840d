// Reference KFAtt loops (kfatt.h): scalar, in order; the oracle of the vector versions.
#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void kfatt_scores(const float* q, const float* K, int64_t ldk, int64_t n, int64_t dh, float scale,
                  float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* k = K + t * ldk;
    float acc = 0.0f;
    for (int64_t e = 0; e < dh; ++e) acc += q[e] * k[e];
    out[t] = acc * scale;
  }
}

void kfatt_wsum(const float* w, const float* V, int64_t ldv, int64_t n, int64_t dh, float* acc) {
  for (int64_t t = 0; t < n; ++t) {
    const float* v = V + t * ldv;
    for (int64_t e = 0; e < dh; ++e) acc[e] += w[t] * v[e];
  }
}

}  // namespace dpn::kernels::ref
