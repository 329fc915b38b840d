// `dense_input`: the values of a dense field as given (finiteness is checked up front by the executor).
#include <cstring>

#include "ops/op.h"

namespace dpn::ops {

namespace {

class DenseInput : public Op {
 public:
  DenseInput(size_t field, int64_t dim) : field_(field) {
    width = dim;
    this->field = int64_t(field);
  }
  void run(const Block& blk, const float* const*, float* out, float*) const override {
    const FieldInput& in = blk.inputs[field_];
    std::memcpy(out, in.values + blk.row0 * width, sizeof(float) * size_t(blk.rows * width));
  }

 private:
  size_t field_;
};

}  // namespace

std::unique_ptr<Op> make_dense_input(const NodeBuilder& nb) {
  nb.expect_inputs(0, 0);
  const size_t fi = nb.attr_field();
  const schema::Field& f = nb.fields()[fi];
  if (f.info.kind != FieldKind::Dense)
    nb.fail("field '" + f.info.name + "' is not dense; dense_input needs a dense field");
  return std::make_unique<DenseInput>(fi, f.info.dim);
}

}  // namespace dpn::ops
