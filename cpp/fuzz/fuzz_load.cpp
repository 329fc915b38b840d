// libFuzzer target: the model loader (and predict on whatever loads). Any input must load or be
// refused with a dpn::Error; ASan/UBSan (CI builds it with both) turn every memory or UB bug into a
// crash. The checksum is recomputed over the mutated bytes first, or nearly every mutation would
// stop at the CRC and the fuzzer would never reach the table, metadata and graph validation behind
// it (the checksum check itself is covered by cpp/tests/format_test.cpp).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "dpn/dpn.h"
#include "format/crc32.h"
#include "synth_batch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
int g_loaded = 0;  // inputs that loaded (the control below included)
}

// Prove the target tests something: the valid models of DPN_FUZZ_MODELS (.ci/fuzz sets it) must
// load and predict through the very path every input takes, before any mutation runs.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("DPN_FUZZ_MODELS");
  if (!env || !*env) return 0;  // a plain replay of files
  std::string s = env;
  for (size_t pos = 0; pos <= s.size();) {
    size_t end = s.find(':', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) {
      const std::string path = s.substr(pos, end - pos);
      std::ifstream f(path, std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      const int before = g_loaded;
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
      if (g_loaded == before) {
        std::fprintf(stderr, "fuzz_load: the control model %s did not load\n", path.c_str());
        std::abort();
      }
    }
    pos = end + 1;
  }
  std::fprintf(stderr, "fuzz_load: %d control models load and predict\n", g_loaded);
  return 0;
}

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
  ++g_loaded;
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
