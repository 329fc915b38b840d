// `session_embedding` and `session_length` (docs/format.md §5d): a timed sequence's sessions
// (ops/session.h) as behaviour embeddings [rows, S·L·dim] and as lengths [rows, S]. A field other
// than the timestamps' own sequence is laid out by that sequence's sessions (the same positions:
// schema/validate.cpp checks the shapes). float16 / bfloat16 / int8 rows are widened as copied.
#include <cstring>
#include <vector>

#include "ops/op.h"
#include "ops/session.h"
#include "ops/seq.h"
#include "schema/id_policy.h"

namespace dpn::ops {

namespace {

class SessionRows {
 public:
  SessionRows(const schema::Field& ts, size_t ts_index) : ts_(ts), ti_(ts_index) {}
  // fn(b, src [S·L], len [S]) for every row b of the block.
  template <class Fn>
  void run(const Block& blk, Fn&& fn) const {
    const int64_t S = ts_.max_sessions, L = ts_.session_len;
    std::vector<int64_t> work, src(static_cast<size_t>(S * L)), lens(static_cast<size_t>(S));
    const FieldInput& ids_in = blk.inputs[size_t(ts_.sequence)];
    const FieldInput& t_in = blk.inputs[ti_];
    for (int64_t b = 0; b < blk.rows; ++b) {
      int64_t cols = 0, tcols = 0;
      const int64_t* ids = seq_row(ids_in, blk.row0 + b, &cols);
      const int64_t* times = seq_row(t_in, blk.row0 + b, &tcols);
      segment_row(ids, times, cols, ts_.gap, S, L, work, src.data(), lens.data());
      fn(b, src.data(), lens.data());
    }
  }

 private:
  const schema::Field& ts_;
  size_t ti_;
};

class SessionEmbedding : public SessionOp {
 public:
  SessionEmbedding(size_t field, const schema::Field& f, size_t ti, const schema::Field& ts, Table table)
      : f_(f), rows_(ts, ti), S_(ts.max_sessions), L_(ts.session_len), table_(table) {
    width = S_ * L_ * f.info.dim;
    this->field = int64_t(field);
    timestamps = int64_t(ti);
  }

  void run(const Block& blk, const float* const*, float* out, float*) const override {
    const FieldInput& in = blk.inputs[size_t(field)];
    const int64_t dim = f_.info.dim;
    rows_.run(blk, [&](int64_t b, const int64_t* src, const int64_t*) {
      int64_t cols = 0;
      const int64_t* ids = seq_row(in, blk.row0 + b, &cols);
      float* o = out + b * width;
      for (int64_t p = 0; p < S_ * L_; ++p) {
        // an empty position, or an aligned field's -1 at a kept behaviour: zeros
        if (src[p] < 0 || ids[src[p]] == -1)
          std::memset(o + p * dim, 0, sizeof(float) * size_t(dim));
        else
          copy_table_row(table_, dim, schema::resolve_id(f_, ids[src[p]]), o + p * dim);
      }
    });
  }

 private:
  const schema::Field& f_;
  SessionRows rows_;
  int64_t S_, L_;
  Table table_;
};

class SessionLength : public SessionOp {
 public:
  SessionLength(size_t ti, const schema::Field& ts) : rows_(ts, ti), S_(ts.max_sessions) {
    width = S_;
    field = ts.sequence;
    timestamps = int64_t(ti);
  }

  void run(const Block& blk, const float* const*, float* out, float*) const override {
    rows_.run(blk, [&](int64_t b, const int64_t*, const int64_t* len) {
      for (int64_t s = 0; s < S_; ++s) out[b * S_ + s] = static_cast<float>(len[s]);
    });
  }

 private:
  SessionRows rows_;
  int64_t S_;
};

}  // namespace

std::unique_ptr<Op> make_session_embedding(const NodeBuilder& nb) {
  nb.expect_inputs(0, 0);
  const size_t fi = seq_field(nb), ti = timestamps_field(nb);
  const schema::Field& f = nb.fields()[fi];
  const schema::Field& ts = nb.fields()[ti];
  const int64_t lim = int64_t(1) << 24;
  if (f.info.dim > lim || ts.max_sessions * ts.session_len * f.info.dim > lim)
    nb.fail("max_sessions x session_len x dim of field '" + f.info.name + "' too large");
  const int64_t rows = f.info.vocab + (f.policy == schema::Policy::OovBucket ? 1 : 0);
  const Table table = nb.table_param("table", {rows, f.info.dim});
  return std::make_unique<SessionEmbedding>(fi, f, ti, ts, table);
}

std::unique_ptr<Op> make_session_length(const NodeBuilder& nb) {
  nb.expect_inputs(0, 0);
  const size_t ti = timestamps_field(nb);
  return std::make_unique<SessionLength>(ti, nb.fields()[ti]);
}

}  // namespace dpn::ops
