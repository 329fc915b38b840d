// The attention scratch size every ISA's attention_rows (attention.h) works in.
#include "kernels/attention.h"

namespace dpn::kernels {

// Keys of one head transposed, padded to a multiple of 64 positions ([d, Lp] covers any head and
// the vector versions' key blocks), plus one query's scores.
int64_t attention_scratch_floats(int64_t L, int64_t d) {
  const int64_t Lp = (L + 63) / 64 * 64;
  return d * Lp + Lp;
}

}  // namespace dpn::kernels
