// The tile configuration of the AMX GEMMs (gemm_bf16_amx.cpp, gemm_int8_amx.cpp): all eight tiles
// 16 rows × 64 bytes. Tile state is per thread: each GEMM call loads it at its start and releases
// it at its end (_tile_release), so a thread holds no tile data between calls. Also the C tiles'
// zero / load / store, shared by both GEMMs. Include ONLY from
// files compiled with the avx512amx flags; internal linkage (see kernels/vecmath_avx512.h).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace dpn::kernels {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette, start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

inline void amx_load_config() {
  TileConfig c;
  __builtin_memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int i = 0; i < 8; ++i) {
    c.rows[i] = 16;
    c.colsb[i] = 64;
  }
  _tile_loadconfig(&c);
}

// The C tiles of a group of R 16-row halves × Q 16-column tiles (tmm0-3: tmm0 rows 0-15 columns
// 0-15, tmm1 columns 16-31, tmm2 / tmm3 rows 16-31) over 4-byte elements (float32 or int32) at c,
// `stride` bytes a row: zeroed, loaded or stored.
template <int R, int Q>
inline void amx_zero_c() {
  _tile_zero(0);
  if constexpr (Q == 2) _tile_zero(1);
  if constexpr (R == 2) _tile_zero(2);
  if constexpr (R == 2 && Q == 2) _tile_zero(3);
}

template <int R, int Q>
inline void amx_load_c(const void* c, int64_t stride) {
  const char* p = static_cast<const char*>(c);
  _tile_loadd(0, p, stride);
  if constexpr (Q == 2) _tile_loadd(1, p + 64, stride);
  if constexpr (R == 2) _tile_loadd(2, p + 16 * stride, stride);
  if constexpr (R == 2 && Q == 2) _tile_loadd(3, p + 16 * stride + 64, stride);
}

template <int R, int Q>
inline void amx_store_c(void* c, int64_t stride) {
  char* p = static_cast<char*>(c);
  _tile_stored(0, p, stride);
  if constexpr (Q == 2) _tile_stored(1, p + 64, stride);
  if constexpr (R == 2) _tile_stored(2, p + 16 * stride, stride);
  if constexpr (R == 2 && Q == 2) _tile_stored(3, p + 16 * stride + 64, stride);
}

}  // namespace
}  // namespace dpn::kernels
