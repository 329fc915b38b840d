// libFuzzer target: predict on random batches for fixed valid models (DPN_FUZZ_MODELS, a
// ':'-separated list of model files). The input picks the model, batch size, threads, per-field
// widths (including wrong ones) and the raw bytes of every id and value (any int64, NaN, inf,
// huge floats). predict must score the batch or throw InputError naming a field; anything else
// (another exception, a sanitizer report) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dpn/dpn.h"
#include "synth_batch.h"

namespace {

std::vector<std::shared_ptr<const dpn::Model>> g_models;

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  template <class T>
  T raw() {
    T v{};
    const size_t k = n < sizeof(T) ? n : sizeof(T);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("DPN_FUZZ_MODELS");
  if (!env || !*env) {
    std::fprintf(stderr, "set DPN_FUZZ_MODELS=model.bin[:model2.bin...]\n");
    std::abort();
  }
  std::string s = env;
  for (size_t pos = 0; pos <= s.size();) {
    size_t end = s.find(':', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) g_models.push_back(dpn::Model::load(s.substr(pos, end - pos)));
    pos = end + 1;
  }
  // Prove the target tests something: every model scores a valid batch here, before any input.
  for (const auto& m : g_models) {
    dpn_test::SynthBatch b(*m, 3);
    std::vector<float> out(3);
    m->predict(b.inputs, 3, out.data(), false, 1);  // throws (and aborts the run) on failure
  }
  if (g_models.empty()) {
    std::fprintf(stderr, "DPN_FUZZ_MODELS names no model\n");
    std::abort();
  }
  std::fprintf(stderr, "fuzz_predict: %zu models load and predict\n", g_models.size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r{data, size};
  const dpn::Model& m = *g_models[r.byte() % g_models.size()];
  const int64_t rows = r.byte() % 40;
  const uint8_t flags = r.byte();
  const int threads = 1 + (flags & 3);
  const bool logits = flags & 4;
  const auto& fields = m.fields();
  std::vector<std::vector<int64_t>> ids(fields.size());
  std::vector<std::vector<float>> values(fields.size());
  std::vector<std::vector<int64_t>> offsets(fields.size());
  std::vector<dpn::FieldInput> in(fields.size());
  for (size_t i = 0; i < fields.size(); ++i) {
    const dpn::FieldInfo& f = fields[i];
    const uint8_t w = r.byte();
    int64_t cols;
    switch (f.kind) {
      case dpn::FieldKind::Sparse: cols = (w % 16 == 15) ? 2 : 1; break;
      case dpn::FieldKind::MultiHot: cols = w % (f.max_len > 0 ? f.max_len + 2 : 9); break;
      case dpn::FieldKind::Sequence: cols = w % (f.max_len + 3); break;  // over-long too
      default: cols = (w % 16 == 15) ? f.dim + 1 : f.dim; break;
    }
    in[i].rows = (w % 32 == 31) ? rows + 1 : rows;  // sometimes a wrong row count
    in[i].cols = cols;
    const size_t count = size_t(in[i].rows * cols);
    if (f.kind == dpn::FieldKind::Dense) {
      values[i].resize(count);
      // Small ids/values most of the time (they reach the math), raw bytes otherwise.
      for (auto& v : values[i]) v = (w & 64) ? r.raw<float>() : float(int8_t(r.byte())) / 16.0f;
      in[i].values = values[i].data();
    } else if (f.kind == dpn::FieldKind::Sequence && (w & 128)) {
      // Ragged rows: offsets from small steps (sometimes negative or past the end: refused).
      auto& off = offsets[i];
      off.assign(size_t(in[i].rows) + 1, 0);
      const uint8_t o = r.byte();
      off[0] = (o % 16 == 15) ? 1 : 0;
      for (size_t b = 1; b < off.size(); ++b)
        off[b] = off[b - 1] + int64_t(r.byte() % 9) - (o % 32 == 31);
      in[i].cols = off.back() + ((o % 64 == 63) ? 1 : 0);
      ids[i].resize(size_t(in[i].cols > 0 ? in[i].cols : 0));
      for (auto& v : ids[i]) v = int64_t(int8_t(r.byte()));
      in[i].ids = ids[i].data();
      in[i].offsets = off.data();
    } else {
      ids[i].resize(count);
      for (auto& v : ids[i]) v = (w & 64) ? r.raw<int64_t>() : int64_t(int8_t(r.byte()));
      in[i].ids = ids[i].data();
    }
  }
  std::vector<float> out(static_cast<size_t>(rows) + 1);
  try {
    m.predict(in, rows, out.data(), logits, threads);
  } catch (const dpn::InputError&) {
  }
  return 0;
}
