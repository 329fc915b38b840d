// `augru`: DIEN's interest evolution, a GRU whose update gate is scaled by each position's
// attention score; the last state out (docs/format.md §5c). The recurrence is ops/recurrence.h's.
#include <memory>
#include <string>

#include "ops/op.h"
#include "ops/recurrence.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

class Augru : public Op {
 public:
  explicit Augru(const NodeBuilder& nb) : rec_(nb) { width = rec_.hidden(); }
  size_t scratch_floats(int64_t rows) const override { return rec_.scratch_floats(rows); }
  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    rec_.run(blk, in[0], in[2], in[1], false, nullptr, out, scratch);
  }

 private:
  Recurrence rec_;
};

}  // namespace

std::unique_ptr<Op> make_augru(const NodeBuilder& nb) {
  nb.expect_inputs(3, 3);
  auto op = std::make_unique<Augru>(nb);
  const int64_t T = nb.attr_int("max_len", 1), d = nb.attr_int("in", 1);
  if (nb.in_widths()[0] != T * d)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[0]) +
            ", expected max_len*in=" + std::to_string(T * d));
  if (nb.in_widths()[1] != T)
    nb.fail("input att has width " + std::to_string(nb.in_widths()[1]) +
            ", expected max_len=" + std::to_string(T));
  seq_len_input(nb, 2);
  return op;
}

}  // namespace dpn::ops
