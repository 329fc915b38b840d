#include "format/crc32.h"

#include <array>

#if defined(DPN_HAVE_ZLIB)
#include <zlib.h>
#endif

namespace dpn::format {

namespace {
using Tables = std::array<std::array<uint32_t, 256>, 8>;

Tables make_tables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i)
    for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  return t;
}

const Tables& tables() {
  static const Tables t = make_tables();  // thread-safe static init, immutable after
  return t;
}
}  // namespace

uint32_t crc32_ref(const uint8_t* p, size_t n, uint32_t crc) {
  const Tables& t = tables();
  uint32_t c = ~crc;
  while (n >= 8) {
    // Little-endian assembly of bytes; independent of host alignment.
    uint32_t lo =
        c ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    uint32_t hi = uint32_t(p[4]) | uint32_t(p[5]) << 8 | uint32_t(p[6]) << 16 | uint32_t(p[7]) << 24;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
  return ~c;
}

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc) {
#if defined(DPN_HAVE_ZLIB)
  // zlib's CRC-32 is the same function (polynomial 0xEDB88320, ~crc in and out) at ~3x the speed of
  // the byte-table loop above: the checksum was ~90% of a large model's load time.
  uLong c = crc;
  while (n > 0) {  // crc32() takes a 32-bit length
    const uInt chunk = n > (1u << 30) ? (1u << 30) : uInt(n);
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return uint32_t(c);
#else
  return crc32_ref(p, n, crc);
#endif
}

}  // namespace dpn::format
