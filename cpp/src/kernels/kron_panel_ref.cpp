// Reference left panel of the Kronecker GEMM (kron.h): the oracle of kron_panel_avx2.cpp /
// kron_panel_avx512.cpp (every version gives the same bits).
#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void kron_panel(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                int64_t rows, bool with_h, float* P, int64_t ldp) {
  for (int64_t b = 0; b < rows; ++b) {
    const float* xb = x + b * ldx;
    const float* hb = h + b * ldh;
    float* pb = P + b * ldp;
    for (int64_t i = 0; i < m; ++i) pb[i] = xb[i];
    for (int64_t k = 0; k < l; ++k) {
      const float s = hb[k];
      float* d = pb + (k + 1) * m;
      for (int64_t i = 0; i < m; ++i) d[i] = s * xb[i];
    }
    if (with_h) {
      float* d = pb + (l + 1) * m;
      for (int64_t k = 0; k < l; ++k) d[k] = hb[k];
    }
  }
}

}  // namespace dpn::kernels::ref
