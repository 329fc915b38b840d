// Row kernels: embedding gather/pooling, layernorm, DCN cross.
#pragma once

#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

// Every kernel here runs with the process's kernel ISA (cpu::selected_isa(), the one the GEMMs
// use); the overloads taking an Isa first run that ISA's version (it must be cpu::available()).
// pool_rows gives the same bits with every ISA. layernorm_rows and cross_rows: the AVX2 and AVX-512
// versions give the same bits as each other (16 lane partial sums, then one fixed tree; no fused
// multiply-adds); the reference sums in order, so its row sums round differently (a few ulp of
// the sums of magnitudes).

// out[0:dim] = scale · Σ_k table[rows[k], 0:dim]; zeros when n == 0. Row indices already checked.
void pool_rows(const float* table, int64_t dim, const int64_t* rows, int64_t n, float scale, float* out);
void pool_rows(cpu::Isa isa, const float* table, int64_t dim, const int64_t* rows, int64_t n,
               float scale, float* out);
// The same over a float16 (bf16 false) or bfloat16 (bf16 true) table, each value widened to float32
// (exactly) as it is read: the same bits as pool_rows over the widened table, on every ISA.
void pool_rows_half(const uint16_t* table, bool bf16, int64_t dim, const int64_t* rows, int64_t n,
                    float scale, float* out);
void pool_rows_half(cpu::Isa isa, const uint16_t* table, bool bf16, int64_t dim, const int64_t* rows,
                    int64_t n, float scale, float* out);
// The same over an int8 table (docs/format.md §3.2): each value of row r read as scales[r] · q, one
// float32 multiply, then summed as pool_rows sums: the same bits as pool_rows over the dequantized
// table, on every ISA.
void pool_rows_int8(const int8_t* table, const float* scales, int64_t dim, const int64_t* rows,
                    int64_t n, float scale, float* out);
void pool_rows_int8(cpu::Isa isa, const int8_t* table, const float* scales, int64_t dim,
                    const int64_t* rows, int64_t n, float scale, float* out);

// y = (x − mean) / sqrt(var + eps) · w + b over each row of width d (population variance).
void layernorm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps,
                    float* y);
void layernorm_rows(cpu::Isa isa, const float* x, int64_t rows, int64_t d, const float* w,
                    const float* b, float eps, float* y);

// y = x0 · (xl·w) + b + xl, per row of width d.
void cross_rows(const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y);
void cross_rows(cpu::Isa isa, const float* x0, const float* xl, int64_t rows, int64_t d, const float* w,
                const float* b, float* y);

}  // namespace dpn::kernels
