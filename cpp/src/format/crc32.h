// CRC-32 (IEEE 802.3 polynomial, same values as zlib.crc32), slice-by-8.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpn::format {

// Continue a CRC: crc32(b, crc32(a)) == crc32(a + b); start with crc = 0.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

}  // namespace dpn::format
