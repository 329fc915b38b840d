// Test data written by cpp/tests/make_data.py (directory in $DPN_TEST_DATA): models, batch files
// and the outputs the Python side computed for them.
#pragma once

#include <algorithm>
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

// A ranking request made from a batch file: users take rows 0..U-1 of the fields in `mask` (one
// row per user), candidate row b the file's row b mod its rows for the others; `broadcast` is the
// batch that repeats each user's row on its candidates, whose scores the request must give.
struct Request {
  std::vector<int64_t> groups;
  std::vector<dpn::FieldInput> cand, broadcast;
  dpn::SharedInputs shared;
  std::vector<std::vector<int64_t>> i64;
  std::vector<std::vector<float>> f32;

  Request(const dpn::Model& m, const BatchFile& bf, unsigned mask, const std::vector<int64_t>& counts) {
    groups.push_back(0);
    for (int64_t c : counts) groups.push_back(groups.back() + c);
    const int64_t B = groups.back(), U = int64_t(counts.size());
    const std::vector<dpn::FieldInput> file = bf.inputs(m);
    cand = broadcast = file;
    shared.groups = groups.data();
    shared.users = U;
    i64.reserve(2 * file.size());
    f32.reserve(2 * file.size());
    for (size_t i = 0; i < file.size(); ++i) {
      const dpn::FieldInput& f = file[i];
      const bool is_shared = mask >> i & 1;
      // Row b of the broadcast batch: its user's row (shared) or the file's row b mod rows.
      auto row_of = [&](int64_t b) {
        if (!is_shared) return b % bf.rows;
        return int64_t(std::upper_bound(groups.begin(), groups.end(), b) - groups.begin()) - 1;
      };
      const size_t w = size_t(f.cols);
      if (f.ids) {
        auto& v = i64.emplace_back(size_t(B) * w + 1);
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(v.data() + b * w, f.ids + row_of(b) * int64_t(w), w * 8);
        broadcast[i].ids = v.data();
      } else {
        auto& v = f32.emplace_back(size_t(B) * w + 1);
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(v.data() + b * w, f.values + row_of(b) * int64_t(w), w * 4);
        broadcast[i].values = v.data();
      }
      broadcast[i].rows = B;
      cand[i] = broadcast[i];
      if (!is_shared) continue;
      shared.fields.push_back(dpn::SharedInput{int64_t(i), f});
      shared.fields.back().input.rows = U;
      cand[i] = dpn::FieldInput{};
    }
  }
};

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace dpn_test
