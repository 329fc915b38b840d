// Reference embedding pooling (rows.h): the oracle of pool_avx2.cpp / pool_avx512.cpp. Its exact
// rounding is what the golden outputs of the ref ISA were made with.
#include "kernels/half.h"
#include "kernels/isa_kernels.h"

namespace dpn::kernels::ref {

void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
               float* out) {
  for (int64_t j = 0; j < dim; ++j) out[j] = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    const float* t = table + rows[k] * dim;
    for (int64_t j = 0; j < dim; ++j) out[j] += t[j];
  }
  if (scale != 1.0f)
    for (int64_t j = 0; j < dim; ++j) out[j] *= scale;
}

void pool_rows_half(const uint16_t* table, bool bf16, int64_t dim, const int64_t* rows, int64_t n,
                    float scale, float* out) {
  for (int64_t j = 0; j < dim; ++j) out[j] = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    const uint16_t* t = table + rows[k] * dim;
    for (int64_t j = 0; j < dim; ++j) out[j] += half_to_f32(t[j], bf16);
  }
  if (scale != 1.0f)
    for (int64_t j = 0; j < dim; ++j) out[j] *= scale;
}

void pool_rows_int8(const int8_t* table, const float* scales, int64_t dim, const int64_t* rows,
                    int64_t n, float scale, float* out) {
  for (int64_t j = 0; j < dim; ++j) out[j] = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    const int8_t* t = table + rows[k] * dim;
    const float s = scales[rows[k]];
    for (int64_t j = 0; j < dim; ++j) out[j] += s * float(t[j]);
  }
  if (scale != 1.0f)
    for (int64_t j = 0; j < dim; ++j) out[j] *= scale;
}

}  // namespace dpn::kernels::ref
