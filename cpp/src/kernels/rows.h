// Row kernels: embedding gather/pooling, layernorm, DCN cross.
#pragma once

#include <cstdint>

namespace dpn::kernels {

// out[0:dim] = scale · Σ_k table[rows[k], 0:dim]; zeros when n == 0. Row indices already checked.
void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale,
               float* out);

// y = (x − mean) / sqrt(var + eps) · w + b over each row of width d (population variance).
void layernorm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b,
                    float eps, float* y);

// y = x0 · (xl·w) + b + xl, per row of width d.
void cross_rows(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y);

}  // namespace dpn::kernels
