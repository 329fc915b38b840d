// CRC-32 (IEEE 802.3 polynomial, same values as zlib.crc32): zlib's when the build found zlib,
// else the slice-by-8 reference below.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpn::format {

// Continue a CRC: crc32(b, crc32(a)) == crc32(a + b); start with crc = 0.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);
// The slice-by-8 table version: the oracle of crc32 (cpp/tests/format_test.cpp) and its fallback.
uint32_t crc32_ref(const uint8_t* data, size_t n, uint32_t crc = 0);

}  // namespace dpn::format
