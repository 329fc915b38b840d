// The public C++ API against outputs the Python side computed (make_data.py): load from a path and
// from memory, schema inspection, Batch views, per-call threads, errors.
#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "dpn/dpn.h"
#include "dpn/dpn_c.h"
#include "test_data.h"

using dpn_test::BatchFile;
using dpn_test::data;
using dpn_test::Request;

namespace {

// The project's tolerance for engine vs reference (float32 kernels vs the float64 interpreter).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rtol = 1e-4f,
                  float atol = 1e-5f) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_LE(std::fabs(got[i] - want[i]), atol + rtol * std::fabs(want[i])) << "row " << i;
}

std::vector<float> run(const dpn::Model& m, const BatchFile& b, bool logits, int threads = 1) {
  std::vector<float> out(size_t(b.rows), -7.0f);
  m.predict(b.inputs(m), b.rows, out.data(), logits, threads);
  return out;
}

}  // namespace

TEST(Api, TinyMatchesSpecInterpreter) {
  auto m = dpn::Model::load(data("tiny_a.bin"));
  BatchFile b(data("tiny.batch"));
  expect_close(run(*m, b, true), dpn_test::read_f32(data("tiny_a.logits")));
  auto mb = dpn::Model::load(data("tiny_b.bin"));
  expect_close(run(*mb, b, true), dpn_test::read_f32(data("tiny_b.logits")));
}

TEST(Api, GoldenV1Outputs) {
  auto m = dpn::Model::load(data("golden.bin"));
  BatchFile b(data("golden.batch"));
  expect_close(run(*m, b, false), dpn_test::read_f32(data("golden.prob")), 1e-5f, 1e-6f);
  expect_close(run(*m, b, true), dpn_test::read_f32(data("golden.logits")), 1e-5f, 1e-6f);
}

TEST(Api, GoldenOpset2To5Outputs) {
  for (const char* tag : {"golden_field", "golden_seq", "golden_bf16", "golden_seq_fp16",
                          "golden_int8_emb", "golden_int8_w", "golden_seq_gen", "golden_dien"}) {
    auto m = dpn::Model::load(data(std::string(tag) + ".bin"));
    const std::string t(tag);
    const bool int8 = t.find("int8") != std::string::npos, half = t.find("16") != std::string::npos;
    const bool op5 = t == "golden_seq_gen" || t == "golden_dien";
    EXPECT_EQ(m->opset(), op5 ? 5 : int8 ? 4 : half ? 3 : 2) << tag;
    BatchFile b(data(std::string(tag) + ".batch"));
    expect_close(run(*m, b, false), dpn_test::read_f32(data(std::string(tag) + ".prob")), 1e-5f, 1e-6f);
    expect_close(run(*m, b, true), dpn_test::read_f32(data(std::string(tag) + ".logits")), 1e-5f, 1e-6f);
  }
}

// Sequence fields given as ragged rows (Batch::set_ragged, and offsets through the C ABI) score like
// the same rows padded with -1 (the golden seq batch has empty, full and over-long rows).
TEST(Api, RaggedSequencesEqualPadded) {
  auto m = dpn::Model::load(data("golden_seq.bin"));
  BatchFile bf(data("golden_seq.batch"));
  const auto padded = run(*m, bf, true);
  std::vector<std::vector<int64_t>> values, offsets;
  dpn::Batch batch(*m, bf.rows);
  for (const auto& c : bf.columns) {
    const int64_t i = m->field_index(c.name);
    ASSERT_GE(i, 0);
    if (m->fields()[size_t(i)].kind != dpn::FieldKind::Sequence) {
      batch.set_ids(c.name, c.i64.data(), c.cols);
      continue;
    }
    values.emplace_back();
    offsets.emplace_back(1, 0);
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t t = 0; t < c.cols; ++t)
        if (c.i64[size_t(r * c.cols + t)] != -1) values.back().push_back(c.i64[size_t(r * c.cols + t)]);
      offsets.back().push_back(int64_t(values.back().size()));
    }
    batch.set_ragged(c.name, values.back().data(), offsets.back().data(), int64_t(values.back().size()));
  }
  ASSERT_EQ(values.size(), 2u);
  std::vector<float> out(size_t(bf.rows));
  m->predict(batch, out.data(), dpn::PredictOptions{1, true});
  expect_close(out, padded, 1e-6f, 1e-7f);
  EXPECT_THROW(batch.set_ragged("item", values[0].data(), offsets[0].data(), 1), dpn::InputError);

  // The same through the C ABI: the batch's views as dpn_field_input, offsets included.
  dpn_model* cm = nullptr;
  ASSERT_EQ(dpn_model_load(data("golden_seq.bin").c_str(), &cm), DPN_OK) << dpn_last_error();
  std::vector<dpn_field_input> cin(batch.inputs().size());
  for (size_t i = 0; i < cin.size(); ++i) {
    const dpn::FieldInput& in = batch.inputs()[i];
    cin[i] =
        dpn_field_input{in.ids, in.values, in.rows, in.cols, in.offsets, {nullptr, nullptr, nullptr}};
    dpn_field_info info;
    ASSERT_EQ(dpn_model_field(cm, int64_t(i), &info), DPN_OK);
    EXPECT_EQ(info.kind, m->fields()[i].kind == dpn::FieldKind::Sequence ? DPN_SEQUENCE : info.kind);
  }
  std::vector<float> cout(size_t(bf.rows));
  dpn_predict_options opt{1, 1, 0, {0}};
  ASSERT_EQ(dpn_model_predict(cm, cin.data(), cin.size(), bf.rows, cout.data(), &opt), DPN_OK)
      << dpn_last_error();
  EXPECT_EQ(cout, out);
  // A broken offsets array is refused with DPN_ERR_INPUT naming the field, not a crash.
  std::vector<int64_t> bad = offsets[0];
  bad[1] = bad.back() + 5;
  for (auto& in : cin)
    if (in.offsets == offsets[0].data()) in.offsets = bad.data();
  EXPECT_EQ(dpn_model_predict(cm, cin.data(), cin.size(), bf.rows, cout.data(), &opt), DPN_ERR_INPUT);
  EXPECT_NE(std::string(dpn_last_error()).find("hist_"), std::string::npos) << dpn_last_error();
  dpn_model_free(cm);
}

TEST(Api, Schema) {
  auto m = dpn::Model::load(data("tiny_a.bin"));
  ASSERT_EQ(m->num_fields(), 5);
  const char* names[] = {"user", "tags", "item", "price", "ctx"};
  const dpn::FieldKind kinds[] = {dpn::FieldKind::Sparse, dpn::FieldKind::MultiHot,
                                  dpn::FieldKind::Sparse, dpn::FieldKind::Dense, dpn::FieldKind::Dense};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(m->fields()[size_t(i)].name, names[i]);
    EXPECT_EQ(m->fields()[size_t(i)].kind, kinds[i]);
    EXPECT_EQ(m->field_index(names[i]), i);
  }
  EXPECT_EQ(m->fields()[0].vocab, 7);
  EXPECT_EQ(m->fields()[1].max_len, 4);
  EXPECT_EQ(m->fields()[4].dim, 3);
  EXPECT_EQ(m->field_index("nope"), -1);
  EXPECT_EQ(m->opset(), 1);
  EXPECT_EQ(m->metadata_json().front(), '{');
  EXPECT_NE(m->metadata_json().find("\"schema\""), std::string::npos);
  EXPECT_EQ(std::string(dpn::version()), std::to_string(DPN_VERSION_MAJOR) + "." +
                                             std::to_string(DPN_VERSION_MINOR) + "." +
                                             std::to_string(DPN_VERSION_PATCH));
}

TEST(Api, LoadFromMemoryCopyAndBorrowEqualPath) {
  auto bytes = dpn_test::read_bytes(data("tiny_a.bin"));
  BatchFile b(data("tiny.batch"));
  const auto ref = run(*dpn::Model::load(data("tiny_a.bin")), b, true);
  std::shared_ptr<const dpn::Model> copy = dpn::Model::load_from_memory(bytes.data(), bytes.size());
  std::fill(bytes.begin(), bytes.end(), uint8_t(0xAB));  // Copy: the caller's buffer is free to go
  EXPECT_EQ(run(*copy, b, true), ref);

  auto again = dpn_test::read_bytes(data("tiny_a.bin"));
  void* aligned = std::aligned_alloc(64, (again.size() + 63) / 64 * 64);
  std::memcpy(aligned, again.data(), again.size());
  {
    auto borrowed = dpn::Model::load_from_memory(aligned, again.size(), dpn::BufferMode::Borrow);
    EXPECT_EQ(run(*borrowed, b, true), ref);
  }
  std::free(aligned);
  // Borrow reads tensors in place: a misaligned buffer is refused, not read misaligned.
  std::vector<uint8_t> shifted(again.size() + 64);
  uint8_t* base = shifted.data() + (64 - reinterpret_cast<uintptr_t>(shifted.data()) % 64) % 64 + 4;
  if (base + again.size() > shifted.data() + shifted.size()) base -= 64;
  std::memcpy(base, again.data(), again.size());
  EXPECT_THROW(dpn::Model::load_from_memory(base, again.size(), dpn::BufferMode::Borrow),
               std::invalid_argument);
  EXPECT_EQ(run(*dpn::Model::load_from_memory(base, again.size()), b, true), ref);
  EXPECT_THROW(dpn::Model::load_from_memory(nullptr, 10), std::invalid_argument);
  EXPECT_THROW(dpn::Model::load_from_memory(bytes.data(), 0), dpn::FormatError);
}

TEST(Api, BatchViewsEqualVectorInputs) {
  auto m = dpn::Model::load(data("tiny_a.bin"));
  BatchFile bf(data("tiny.batch"));
  const auto ref = run(*m, bf, false);
  dpn::Batch batch(*m, bf.rows);
  for (const auto& c : bf.columns) {
    if (c.ids)
      batch.set_ids(c.name, c.i64.data(), c.cols);
    else
      batch.set_values(c.name, c.f32.data(), c.cols);
  }
  std::vector<float> out(size_t(bf.rows));
  m->predict(batch, out.data());
  EXPECT_EQ(out, ref);
  const auto in = bf.inputs(*m);
  std::vector<float> out2(size_t(bf.rows));
  m->predict(in.data(), in.size(), bf.rows, out2.data(), dpn::PredictOptions{2, false});
  expect_close(out2, ref, 1e-5f, 1e-6f);
}

TEST(Api, ThreadsPerCallAgree) {
  auto m = dpn::Model::load(data("golden.bin"));
  BatchFile b(data("golden.batch"));
  const auto one = run(*m, b, true, 1);
  for (int t : {2, 3, 4, 8}) expect_close(run(*m, b, true, t), one, 1e-5f, 1e-6f);
}

TEST(Api, Errors) {
  try {
    dpn::Model::load(data("does_not_exist.bin"));
    FAIL() << "no exception";
  } catch (const dpn::IoError& e) {
    EXPECT_EQ(e.errno_value(), ENOENT);
  }
  EXPECT_THROW(dpn::Model::load(dpn_test::data_dir()), dpn::IoError);  // a directory

  auto m = dpn::Model::load(data("tiny_a.bin"));
  BatchFile bf(data("tiny.batch"));
  auto in = bf.inputs(*m);
  std::vector<float> out(size_t(bf.rows));
  EXPECT_THROW(m->predict(in, bf.rows, out.data(), false, 0), std::invalid_argument);
  EXPECT_THROW(m->predict(in, bf.rows, nullptr, false, 1), std::invalid_argument);
  EXPECT_THROW(m->predict(in, bf.rows + 1, out.data(), false, 1), dpn::InputError);
  auto* cols = const_cast<BatchFile::Column*>(&bf.columns[2]);  // 'item', policy "error", vocab 4
  ASSERT_EQ(cols->name, "item");
  cols->i64[3] = 4;
  in = bf.inputs(*m);
  try {
    m->predict(in, bf.rows, out.data(), false, 1);
    FAIL() << "no exception";
  } catch (const dpn::InputError& e) {
    EXPECT_EQ(e.field(), "item");
    EXPECT_EQ(std::string(e.what()).rfind("field 'item': ", 0), 0u) << e.what();
  }
  cols->i64[3] = 1;
  auto* price = const_cast<BatchFile::Column*>(&bf.columns[3]);
  ASSERT_EQ(price->name, "price");
  price->f32[5] = std::numeric_limits<float>::quiet_NaN();
  in = bf.inputs(*m);
  EXPECT_THROW(m->predict(in, bf.rows, out.data(), false, 1), dpn::InputError);

  dpn::Batch batch(*m, 3);
  EXPECT_THROW(batch.set_ids("nope", nullptr), dpn::InputError);
  EXPECT_THROW(batch.set_ids("price", nullptr), dpn::InputError);
  EXPECT_THROW(batch.set_values("user", nullptr, 1), dpn::InputError);
  EXPECT_THROW(batch.set(5, dpn::FieldInput{}), std::out_of_range);
  try {
    m->predict(batch, out.data());
    FAIL() << "no exception";
  } catch (const dpn::InputError& e) {
    EXPECT_EQ(e.field(), "user");
  }
  dpn::Batch empty(*m, 0);
  m->predict(empty, nullptr);
}

// Every subset of shared fields, users with 0, 1 and many candidates, on every family the test
// data has (feature DPN, field DPN, sequence DPN): the scores equal the broadcast batch's within
// the parity bound, rtol 1e-4 / atol 1e-5 (a layer that splits its GEMM, W_u·u + W_i·i, sums in
// another order; the rest is gathered, bit for bit).
TEST(Api, RequestEqualsBroadcast) {
  for (const char* tag : {"tiny_a", "golden", "golden_field", "golden_seq"}) {
    auto m = dpn::Model::load(data(std::string(tag) + ".bin"));
    BatchFile bf(data(std::string(tag[0] == 't' ? "tiny" : tag) + ".batch"));
    ASSERT_GE(bf.rows, 5) << tag;
    const unsigned n = unsigned(m->num_fields());
    // Small requests take the broadcast path, large ones the split (model.cpp's kMinSavedPerCall).
    for (const auto& counts :
         {std::vector<int64_t>{5}, std::vector<int64_t>{0, 1, 7, 0, 3}, std::vector<int64_t>{1},
          std::vector<int64_t>{0}, std::vector<int64_t>{700}, std::vector<int64_t>{0, 300, 1, 400}}) {
      for (unsigned mask = 0; mask < (1u << n); mask += (n > 5 ? 7 : counts[0] > 100 ? 3 : 1)) {
        Request r(*m, bf, mask, counts);
        const int64_t B = r.groups.back();
        std::vector<float> want(static_cast<size_t>(B)), got(static_cast<size_t>(B), -7.0f);
        for (int threads : {1, 3}) {
          dpn::PredictOptions o{threads, true};
          m->predict(r.broadcast, B, want.data(), o);
          m->predict(r.cand, B, r.shared, got.data(), o);
          expect_close(got, want, 1e-4f, 1e-5f);
        }
        // The same through dpn::Batch.
        dpn::Batch batch(*m, B);
        batch.set_groups(r.groups.data(), r.shared.users);
        for (size_t i = 0; i < r.cand.size(); ++i)
          if (!(mask >> i & 1)) batch.set(int64_t(i), r.cand[i]);
        for (const auto& s : r.shared.fields) batch.set_shared(s.field, s.input);
        std::fill(got.begin(), got.end(), -7.0f);
        m->predict(batch, got.data(), dpn::PredictOptions{1, true});
        expect_close(got, want, 1e-4f, 1e-5f);
      }
    }
  }
}

TEST(Api, RequestErrors) {
  auto m = dpn::Model::load(data("tiny_a.bin"));
  BatchFile bf(data("tiny.batch"));
  Request r(*m, bf, 0x3, {2, 3});
  std::vector<float> out(8);
  auto refused = [&](const dpn::SharedInputs& s, const std::vector<dpn::FieldInput>& in, int64_t B,
                     const char* what) {
    try {
      m->predict(in, B, s, out.data());
      ADD_FAILURE() << "no exception for " << what;
    } catch (const dpn::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  m->predict(r.cand, 5, r.shared, out.data());  // the good request
  std::vector<int64_t> g = {1, 2, 5};
  dpn::SharedInputs s = r.shared;
  s.groups = g.data();
  refused(s, r.cand, 5, "start at 0");
  g = {0, 3, 2};
  refused(s, r.cand, 5, "non-decreasing");
  g = {0, 2, 4};
  refused(s, r.cand, 5, "groups end at 4");
  s = r.shared;
  s.groups = nullptr;
  refused(s, r.cand, 5, "no groups");
  s.users = 1;
  refused(s, r.cand, 5, "one row per user");  // the shared fields have 2 rows
  s = r.shared;
  s.fields.push_back(s.fields[0]);
  refused(s, r.cand, 5, "shared twice");
  auto both = r.cand;
  both[0] = r.broadcast[0];
  refused(r.shared, both, 5, "both per candidate and shared");
  auto missing = r.cand;
  missing[3] = dpn::FieldInput{};
  refused(r.shared, missing, 5, "has 0 rows, expected 5");
  s = r.shared;
  s.fields[0].field = 9;
  EXPECT_THROW(m->predict(r.cand, 5, s, out.data()), std::invalid_argument);
  // Refused before any field is read against it (a ragged field would read offsets[users]).
  s = r.shared;
  s.users = -1;
  refused(s, r.cand, 5, "users must be >= 0");
}
