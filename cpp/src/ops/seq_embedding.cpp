// `seq_embedding`: a sequence field's ids -> its behaviour embeddings [rows, max_len·dim], the kept
// ids (seq.h) at positions 0..L−1 and zeros after. A field with `table` reads the shared tensor.
// float16/bfloat16 rows are widened, int8 rows dequantized with their scale, as they are copied.
#include <cstring>

#include "schema/id_policy.h"
#include "ops/op.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

class SeqEmbedding : public Op {
 public:
  SeqEmbedding(size_t field, const schema::Field& f, Table table) : field_(field), f_(f), table_(table) {
    width = f.info.max_len * f.info.dim;
    this->field = int64_t(field);
  }

  void run(const Block& blk, const float* const*, float* out, float*) const override {
    const FieldInput& in = blk.inputs[field_];
    const int64_t dim = f_.info.dim, T = f_.info.max_len;
    for (int64_t b = 0; b < blk.rows; ++b) {
      float* o = out + b * width;
      int64_t cols = 0;
      const int64_t* ids = seq_row(in, blk.row0 + b, &cols);
      const int64_t L = for_each_kept_id(ids, cols, T, [&](int64_t pos, int64_t id) {
        copy_table_row(table_, dim, resolve_id(f_, id), o + pos * dim);
      });
      std::memset(o + L * dim, 0, sizeof(float) * size_t((T - L) * dim));
    }
  }

 private:
  size_t field_;
  const schema::Field& f_;
  Table table_;
};

}  // namespace

std::unique_ptr<Op> make_seq_embedding(const NodeBuilder& nb) {
  nb.expect_inputs(0, 0);
  const size_t fi = seq_field(nb);
  const schema::Field& f = nb.fields()[fi];
  const int64_t lim = int64_t(1) << 24;
  if (f.info.max_len > lim || f.info.dim > lim || f.info.max_len * f.info.dim > lim)
    nb.fail("max_len x dim of field '" + f.info.name + "' too large");
  const int64_t rows = f.info.vocab + (f.policy == schema::Policy::OovBucket ? 1 : 0);
  const Table table = nb.table_param("table", {rows, f.info.dim});
  return std::make_unique<SeqEmbedding>(fi, f, table);
}

}  // namespace dpn::ops
