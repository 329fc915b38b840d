// Reference DCN cross (rows.h): sums in order; the oracle of cross_avx2.cpp / cross_avx512.cpp.
// Its exact rounding is what the golden outputs of the ref ISA were made with.
#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void cross_rows(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = x0 + r * d;
    const float* l = xl + r * d;
    float* o = y + r * d;
    float s = 0.0f;
    for (int64_t j = 0; j < d; ++j) s += l[j] * w[j];
    for (int64_t j = 0; j < d; ++j) o[j] = a[j] * s + b[j] + l[j];
  }
}

}  // namespace dpn::kernels::ref
