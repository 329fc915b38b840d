// libFuzzer target: the model loader (and predict on whatever loads). Any input must load or be
// refused with a dpn::Error; ASan/UBSan (CI builds it with both) turn every memory or UB bug into a
// crash. The checksum is recomputed over the mutated bytes first, or nearly every mutation would
// stop at the CRC and the fuzzer would never reach the table, metadata and graph validation behind
// it (the checksum check itself is covered by cpp/tests/format_test.cpp).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dpn/dpn.h"
#include "format/crc32.h"
#include "synth_batch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> buf(data, data + size);
  if (size >= 80) {
    uint32_t crc = dpn::format::crc32(buf.data(), 76);
    crc = dpn::format::crc32(buf.data() + 80, size - 80, crc);
    for (int i = 0; i < 4; ++i) buf[76 + size_t(i)] = uint8_t(crc >> (8 * i));
  }
  std::shared_ptr<const dpn::Model> m;
  try {
    m = dpn::Model::load_from_memory(buf.data(), buf.size());
  } catch (const dpn::Error&) {
    return 0;
  }
  for (int64_t rows : {1, 3}) {
    dpn_test::SynthBatch b(*m, rows, uint64_t(size));
    std::vector<float> out(static_cast<size_t>(rows));
    try {
      m->predict(b.inputs, rows, out.data(), false, 1);
    } catch (const dpn::InputError&) {
    }
  }
  return 0;
}
