// `gru`: DIEN's interest extractor, torch.nn.GRU over each row's valid positions, every step's
// state out (docs/format.md §5c). The recurrence is ops/recurrence.h's.
#include <memory>
#include <string>

#include "ops/op.h"
#include "ops/recurrence.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

class Gru : public Op {
 public:
  Gru(const NodeBuilder& nb, bool reverse) : rec_(nb), reverse_(reverse) {
    width = rec_.max_len() * rec_.hidden();
  }
  size_t scratch_floats(int64_t rows) const override { return rec_.scratch_floats(rows); }
  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    rec_.run(blk, in[0], in[1], nullptr, reverse_, out, nullptr, scratch);
  }

 private:
  Recurrence rec_;
  bool reverse_;
};

}  // namespace

std::unique_ptr<Op> make_gru(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  const bool reverse = nb.attr_bool("reverse", false);
  auto op = std::make_unique<Gru>(nb, reverse);
  const int64_t T = nb.attr_int("max_len", 1), d = nb.attr_int("in", 1);
  if (nb.in_widths()[0] != T * d)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[0]) +
            ", expected max_len*in=" + std::to_string(T * d));
  seq_len_input(nb, 1);
  return op;
}

}  // namespace dpn::ops
