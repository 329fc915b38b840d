// `seq_length`: a sequence field's row lengths (the number of ids it keeps, seq.h) as [rows, 1].
#include "ops/op.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

class SeqLength : public Op {
 public:
  SeqLength(size_t field, int64_t T) : field_(field), T_(T) {
    width = 1;
    this->field = int64_t(field);
  }
  void run(const Block& blk, const float* const*, float* out, float*) const override {
    const FieldInput& in = blk.inputs[field_];
    for (int64_t b = 0; b < blk.rows; ++b) {
      int64_t cols = 0;
      const int64_t* ids = seq_row(in, blk.row0 + b, &cols);
      int64_t n = 0;
      for (int64_t t = 0; t < cols; ++t) n += ids[t] != -1;
      out[b] = static_cast<float>(n < T_ ? n : T_);
    }
  }

 private:
  size_t field_;
  int64_t T_;
};

}  // namespace

std::unique_ptr<Op> make_seq_length(const NodeBuilder& nb) {
  nb.expect_inputs(0, 0);
  const size_t fi = seq_field(nb);
  if (nb.fields()[fi].info.max_len > (int64_t(1) << 24)) nb.fail("max_len too large");
  return std::make_unique<SeqLength>(fi, nb.fields()[fi].info.max_len);
}

}  // namespace dpn::ops
