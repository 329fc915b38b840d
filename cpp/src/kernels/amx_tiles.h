// The tile configuration of the AMX GEMMs (gemm_bf16_amx.cpp, gemm_int8_amx.cpp): all eight tiles
// 16 rows × 64 bytes. Tile state is per thread: each GEMM call loads it at its start and releases
// it at its end (_tile_release), so a thread holds no tile data between calls. Include ONLY from
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

}  // namespace
}  // namespace dpn::kernels
