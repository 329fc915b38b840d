// A batch built from a model's schema alone (for models whose schema a test does not know in
// advance: fuzz-found files, regression files). Ids within each field's vocab, finite values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dpn/dpn.h"

namespace dpn_test {

struct SynthBatch {
  std::vector<std::vector<int64_t>> ids;
  std::vector<std::vector<float>> values;
  std::vector<dpn::FieldInput> inputs;

  SynthBatch(const dpn::Model& m, int64_t rows, uint64_t seed = 1) {
    const auto& fs = m.fields();
    ids.resize(fs.size());
    values.resize(fs.size());
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    auto next = [&] {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      return s;
    };
    for (size_t i = 0; i < fs.size(); ++i) {
      const auto& f = fs[i];
      dpn::FieldInput in;
      in.rows = rows;
      if (f.kind == dpn::FieldKind::Dense) {
        in.cols = f.dim;
        values[i].resize(size_t(rows * f.dim));
        for (auto& v : values[i]) v = float(int64_t(next() % 2001) - 1000) / 1000.0f;
        in.values = values[i].data();
      } else {
        in.cols =
            f.kind == dpn::FieldKind::Sparse ? 1 : (f.max_len > 0 ? std::min<int64_t>(f.max_len, 3) : 3);
        ids[i].resize(size_t(rows * in.cols));
        const uint64_t vocab = f.vocab > 0 ? uint64_t(f.vocab) : 1;
        for (auto& v : ids[i]) v = int64_t(next() % vocab);
        in.ids = ids[i].data();
      }
      inputs.push_back(in);
    }
  }
};

}  // namespace dpn_test
