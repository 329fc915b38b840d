// Test data written by cpp/tests/make_data.py (directory in $DPN_TEST_DATA): models, batch files
// and the outputs the Python side computed for them.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "dpn/dpn.h"

namespace dpn_test {

inline std::string data_dir() {
  const char* d = std::getenv("DPN_TEST_DATA");
  if (!d || !*d) throw std::runtime_error("DPN_TEST_DATA is not set (run through ctest)");
  return d;
}
inline std::string data(const std::string& name) { return data_dir() + "/" + name; }

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline std::vector<float> read_f32(const std::string& path) {
  const auto b = read_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// A batch file: named columns, arranged into FieldInputs in a model's schema order.
struct BatchFile {
  struct Column {
    std::string name;
    bool ids = true;
    int64_t rows = 0, cols = 0;
    std::vector<int64_t> i64;
    std::vector<float> f32;
  };
  std::vector<Column> columns;
  int64_t rows = 0;

  explicit BatchFile(const std::string& path) {
    const auto b = read_bytes(path);
    size_t pos = 0;
    auto take = [&](void* dst, size_t n) {
      if (n > b.size() - pos) throw std::runtime_error("truncated batch file " + path);
      std::memcpy(dst, b.data() + pos, n);
      pos += n;
    };
    char magic[4];
    take(magic, 4);
    if (std::memcmp(magic, "DPNB", 4) != 0) throw std::runtime_error("not a batch file: " + path);
    uint32_t n = 0;
    take(&n, 4);
    for (uint32_t i = 0; i < n; ++i) {
      Column c;
      uint32_t len = 0, type = 0;
      take(&len, 4);
      c.name.resize(len);
      take(&c.name[0], len);
      take(&type, 4);
      take(&c.rows, 8);
      take(&c.cols, 8);
      c.ids = type == 0;
      const size_t count = size_t(c.rows * c.cols);
      if (c.ids) {
        c.i64.resize(count);
        take(c.i64.data(), count * 8);
      } else {
        c.f32.resize(count);
        take(c.f32.data(), count * 4);
      }
      rows = c.rows;
      columns.push_back(std::move(c));
    }
  }

  // Views in the model's schema order (the file's own order need not match).
  std::vector<dpn::FieldInput> inputs(const dpn::Model& m) const {
    std::vector<dpn::FieldInput> v;
    for (const auto& f : m.fields())
      for (const auto& c : columns)
        if (c.name == f.name)
          v.push_back(dpn::FieldInput{c.ids ? c.i64.data() : nullptr, c.ids ? nullptr : c.f32.data(),
                                      c.rows, c.cols});
    return v;
  }
};

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace dpn_test
