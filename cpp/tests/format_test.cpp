// The loader against broken files: the whole corrupted-file catalogue of tests/test_format.py
// (written by make_data.py), every truncation and every single-byte change of a valid file, and
// every fuzz regression file. A bad file is a dpn::FormatError, never a crash.
#include <gtest/gtest.h>

#include <dirent.h>

#include <algorithm>
#include <string>
#include <vector>

#include "dpn/dpn.h"
#include "format/crc32.h"
#include "synth_batch.h"
#include "test_data.h"

namespace {

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A model that loads must also predict (or refuse the request with an InputError).
void predict_some(const dpn::Model& m) {
  for (int64_t rows : {0, 1, 5}) {
    dpn_test::SynthBatch b(m, rows);
    std::vector<float> out(static_cast<size_t>(rows) + 1);
    try {
      m.predict(b.inputs, rows, out.data(), false, 1);
    } catch (const dpn::InputError&) {
    }
  }
}

}  // namespace

TEST(Format, CorruptedFileCatalogue) {
  const std::string dir = dpn_test::data("format");
  const auto names = list_dir(dir);
  ASSERT_GT(names.size(), 100u);
  for (const auto& n : names) {
    SCOPED_TRACE(n);
    const auto bytes = dpn_test::read_bytes(dir + "/" + n);
    for (int from_memory = 0; from_memory < 2; ++from_memory) {
      std::shared_ptr<const dpn::Model> m;
      bool format_error = false;
      try {
        m = from_memory ? dpn::Model::load_from_memory(bytes.data(), bytes.size())
                        : dpn::Model::load(dir + "/" + n);
      } catch (const dpn::FormatError& e) {
        format_error = true;
        EXPECT_NE(std::string(e.what()), "");
      }
      if (ends_with(n, ".error.bin")) EXPECT_TRUE(format_error);
      if (ends_with(n, ".ok.bin")) EXPECT_FALSE(format_error);
      if (m) predict_some(*m);
    }
  }
}

TEST(Format, EveryTruncationIsAFormatError) {
  const auto bytes = dpn_test::read_bytes(dpn_test::data("tiny_a.bin"));
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(dpn::Model::load_from_memory(bytes.data(), n), dpn::FormatError) << "size " << n;
}

TEST(Format, EveryByteChangeIsCaught) {
  auto bytes = dpn_test::read_bytes(dpn_test::data("tiny_a.bin"));
  // The checksum covers every byte but itself; a changed checksum field no longer matches.
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] ^= 0x5A;
    EXPECT_THROW(dpn::Model::load_from_memory(bytes.data(), bytes.size()), dpn::FormatError)
        << "byte " << i;
    bytes[i] ^= 0x5A;
  }
  EXPECT_NO_THROW(dpn::Model::load_from_memory(bytes.data(), bytes.size()));
}

// Every input a fuzzer ever crashed on (tests/fuzz_regressions/*): loads or is refused, never crashes.
TEST(Format, FuzzRegressions) {
  const char* dir = std::getenv("DPN_FUZZ_REGRESSIONS");
  ASSERT_TRUE(dir && *dir);
  for (const auto& n : list_dir(dir)) {
    if (ends_with(n, ".md")) continue;
    SCOPED_TRACE(n);
    const auto bytes = dpn_test::read_bytes(std::string(dir) + "/" + n);
    try {
      auto m = dpn::Model::load_from_memory(bytes.data(), bytes.size());
      predict_some(*m);
    } catch (const dpn::Error&) {
    }
  }
}

// The checksum the loader uses (zlib's when the build found it) against the slice-by-8 reference
// and the standard check value, over lengths around every 8- and 16-byte boundary and unaligned
// starts, and continued across splits (crc(a + b) == crc(b, crc(a))).
TEST(Format, Crc32MatchesReference) {
  const uint8_t check[] = "123456789";
  EXPECT_EQ(dpn::format::crc32(check, 9), 0xCBF43926u);
  EXPECT_EQ(dpn::format::crc32_ref(check, 9), 0xCBF43926u);
  EXPECT_EQ(dpn::format::crc32(check, 0), 0u);
  std::vector<uint8_t> buf(70000);
  uint32_t x = 12345;
  for (auto& b : buf) b = uint8_t((x = x * 1103515245u + 12345u) >> 24);
  for (size_t start : {0, 1, 3, 7}) {
    for (size_t n : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099, 65536}) {
      const uint8_t* p = buf.data() + start;
      const uint32_t want = dpn::format::crc32_ref(p, n);
      EXPECT_EQ(dpn::format::crc32(p, n), want) << start << " " << n;
      const size_t cut = n / 3;
      EXPECT_EQ(dpn::format::crc32(p + cut, n - cut, dpn::format::crc32(p, cut)), want)
          << start << " " << n;
    }
  }
}
