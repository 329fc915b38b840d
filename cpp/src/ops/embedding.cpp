// `embedding`: one table row per id (sparse) or the sum/mean of the rows of a multi-hot row.
// The table is read in place from the mapping, in its dtype (float32, or float16/bfloat16 rows
// widened, int8 rows dequantized with their scale, as they are read).
#include <algorithm>

#include "schema/id_policy.h"
#include "ops/op.h"
#include "kernels/half.h"
#include "kernels/rows.h"

namespace dpn::ops {

namespace {

class Embedding : public Op {
 public:
  Embedding(size_t field, const schema::Field& f, Table table) : field_(field), f_(f), table_(table) {
    width = f.info.dim;
    this->field = int64_t(field);
  }

  size_t scratch_floats(int64_t rows) const override {
    (void)rows;
    return 0;
  }

  void run(const Block& blk, const float* const*, float* out, float*) const override {
    const FieldInput& in = blk.inputs[field_];
    const int64_t dim = f_.info.dim, T = in.cols;
    int64_t rowbuf[64];  // resolved table rows, in chunks of 64 ids
    if (f_.info.kind == FieldKind::Sparse) {
      // Resolve a chunk of ids and prefetch their rows before copying any: the tables are larger
      // than the caches between calls (the GEMMs evict them), and one miss at a time cost ~90 ns
      // a row (6% of criteo at batch 256).
      const int64_t* ids = in.ids + blk.row0 * T;
      for (int64_t b0 = 0; b0 < blk.rows; b0 += 64) {
        const int64_t n = std::min<int64_t>(64, blk.rows - b0);
        for (int64_t i = 0; i < n; ++i) {
          rowbuf[i] = resolve_id(f_, ids[(b0 + i) * T]);
          const int64_t row_bytes = dim * int64_t(table_.elem_size());
          const char* t = static_cast<const char*>(table_.data) + rowbuf[i] * row_bytes;
          for (int64_t byte = 0; byte < row_bytes; byte += 64) __builtin_prefetch(t + byte);
        }
        for (int64_t i = 0; i < n; ++i)
          if (table_.is_f32())
            kernels::pool_rows(table_.f32(), dim, rowbuf + i, 1, 1.0f, out + (b0 + i) * dim);
          else if (table_.is_i8())
            kernels::pool_rows_int8(table_.i8(), table_.scales, dim, rowbuf + i, 1, 1.0f,
                                    out + (b0 + i) * dim);
          else
            kernels::pool_rows_half(table_.half(), table_.bf16(), dim, rowbuf + i, 1, 1.0f,
                                    out + (b0 + i) * dim);
      }
      return;
    }
    for (int64_t b = 0; b < blk.rows; ++b) {
      float* o = out + b * dim;
      const int64_t* ids = in.ids + (blk.row0 + b) * T;
      // multi_hot: -1 is padding wherever it stands; every other value is an id.
      int64_t count = 0;
      for (int64_t j = 0; j < dim; ++j) o[j] = 0.0f;
      int64_t n = 0;
      for (int64_t t = 0; t < T; ++t) {
        if (ids[t] == -1) continue;
        rowbuf[n++] = resolve_id(f_, ids[t]);
        if (n == 64) {
          accumulate(rowbuf, n, o);
          count += n;
          n = 0;
        }
      }
      accumulate(rowbuf, n, o);
      count += n;
      if (f_.pooling == schema::Pooling::Mean && count > 1) {
        const float inv = 1.0f / static_cast<float>(count);
        for (int64_t j = 0; j < dim; ++j) o[j] *= inv;
      }
    }
  }

 private:
  void accumulate(const int64_t* rows, int64_t n, float* o) const {
    const int64_t dim = f_.info.dim;
    for (int64_t k = 0; k < n; ++k) {
      if (table_.is_f32()) {
        const float* t = table_.f32() + rows[k] * dim;
        for (int64_t j = 0; j < dim; ++j) o[j] += t[j];
      } else if (table_.is_i8()) {
        // One multiply, then the add (no FMA on the baseline build): the dequantized table's bits.
        const int8_t* t = table_.i8() + rows[k] * dim;
        const float s = table_.scales[rows[k]];
        for (int64_t j = 0; j < dim; ++j) o[j] += s * float(t[j]);
      } else {
        const uint16_t* t = table_.half() + rows[k] * dim;
        const bool bf16 = table_.bf16();
        for (int64_t j = 0; j < dim; ++j) o[j] += kernels::half_to_f32(t[j], bf16);
      }
    }
  }

  size_t field_;
  const schema::Field& f_;
  Table table_;
};

}  // namespace

std::unique_ptr<Op> make_embedding(const NodeBuilder& nb) {
  nb.expect_inputs(0, 0);
  const size_t fi = nb.attr_field();
  const schema::Field& f = nb.fields()[fi];
  if (f.info.kind != FieldKind::Sparse && f.info.kind != FieldKind::MultiHot)
    nb.fail("field '" + f.info.name + "' is " +
            (f.info.kind == FieldKind::Dense      ? "dense"
             : f.info.kind == FieldKind::Sequence ? "a sequence (read by seq_embedding)"
                                                  : "timestamps (read by session_embedding)") +
            "; embedding needs a sparse or multi_hot field");
  const int64_t rows = f.info.vocab + (f.policy == schema::Policy::OovBucket ? 1 : 0);
  const Table table = nb.table_param("table", {rows, f.info.dim});
  return std::make_unique<Embedding>(fi, f, table);
}

}  // namespace dpn::ops
