// Sequence values (docs/format.md §4.3): a value [rows, T·d] holds each row's positions one after
// another (position i at columns [i·d, (i+1)·d)), zeros past the row's length; the lengths travel
// as a separate [rows, 1] value (from `seq_length`). Sequence ops touch only positions < length.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/rows.h"
#include "ops/op.h"

namespace dpn::ops {

// A row's length from its length value, clamped to [0, T] whatever the float holds (NaN -> 0), so a
// graph that wires any other value there can never make an op read outside the row.
inline int64_t seq_len(float v, int64_t T) {
  if (!(v >= 1.0f)) return 0;
  return v >= static_cast<float>(T) ? T : static_cast<int64_t>(v);
}

// The ids a sequence row keeps (docs/format.md §4.1): its valid (non −1) ids in order, the last
// max_len of them when there are more. Calls fn(position, id) for each; returns the length.
template <class Fn>
int64_t for_each_kept_id(const int64_t* ids, int64_t cols, int64_t max_len, Fn&& fn) {
  int64_t n = 0;
  for (int64_t t = 0; t < cols; ++t) n += ids[t] != -1;
  int64_t skip = n > max_len ? n - max_len : 0, pos = 0;
  for (int64_t t = 0; t < cols; ++t) {
    if (ids[t] == -1) continue;
    if (skip > 0) {
      --skip;
      continue;
    }
    fn(pos++, ids[t]);
  }
  return pos;
}

// Row `row` of a sequence input, padded ([rows, cols]) or ragged (offsets): its ids and count.
inline const int64_t* seq_row(const FieldInput& in, int64_t row, int64_t* count) {
  if (in.offsets) {
    *count = in.offsets[row + 1] - in.offsets[row];
    return in.ids + in.offsets[row];
  }
  *count = in.cols;
  return in.ids + row * in.cols;
}

// out[0:dim] = table row `row` (already resolved), widened / dequantized to float32.
inline void copy_table_row(const Table& table, int64_t dim, int64_t row, float* out) {
  if (table.is_f32())
    std::memcpy(out, table.f32() + row * dim, sizeof(float) * size_t(dim));
  else if (table.is_i8())
    kernels::pool_rows_int8(table.i8(), table.scales, dim, &row, 1, 1.0f, out);
  else
    kernels::pool_rows_half(table.half(), table.bf16(), dim, &row, 1, 1.0f, out);
}

// The schema field named by attr "field", which must be a sequence field.
inline size_t seq_field(const NodeBuilder& nb) {
  const size_t fi = nb.attr_field();
  if (nb.fields()[fi].info.kind != FieldKind::Sequence)
    nb.fail("field '" + nb.fields()[fi].info.name + "' is not a sequence field");
  return fi;
}

// Checks a sequence input of T positions (S sessions of T with `sessions` S, ops/session.h): its
// width must be S·T·d for a whole d ≥ 1; returns d.
inline int64_t seq_dim(const NodeBuilder& nb, size_t input, int64_t T, int64_t S = 1) {
  const int64_t w = nb.in_widths()[input];
  if (w % (S * T) != 0)
    nb.fail("input " + std::to_string(input) + " has width " + std::to_string(w) +
            ", not a multiple of max_len=" + std::to_string(T) +
            (S > 1 ? " x sessions=" + std::to_string(S) : std::string()));
  return w / (S * T);
}

// Checks that input `input` is a length value (width 1).
inline void seq_len_input(const NodeBuilder& nb, size_t input) {
  if (nb.in_widths()[input] != 1)
    nb.fail("input " + std::to_string(input) + " (the lengths) has width " +
            std::to_string(nb.in_widths()[input]) + ", expected 1");
}

// The attributes of a convolution over a sequence (homo_dpo, seq_sepconv_pool, conv1d): max_len T,
// dim n and an odd kernel k, bounded so that k·n and the scratch they size stay small whatever the
// file says; checks that input 0 is the [T·n] sequence and input 1 its lengths.
struct SeqConvAttrs {
  int64_t T, n, k;
};
// S: the sessions a session-structured x holds (S·T positions; its lengths input, of width S, is
// checked by the caller: ops/session.h seq_sessions); 1 for a plain sequence.
inline SeqConvAttrs seq_conv_attrs(const NodeBuilder& nb, int64_t S = 1) {
  const int64_t T = nb.attr_int("max_len", 1), n = nb.attr_int("dim", 1), k = nb.attr_int("kernel", 1);
  const int64_t lim = int64_t(1) << 20;
  if (T > lim || n > lim || k > 1023 || k * n > lim || S * T * n > lim * 16)
    nb.fail("attribute too large");
  if (k % 2 == 0) nb.fail("attribute 'kernel' must be odd, got " + std::to_string(k));
  if (nb.in_widths()[0] != S * T * n)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[0]) + ", expected " +
            (S > 1 ? "sessions*" : "") + "max_len*dim=" + std::to_string(S * T * n));
  if (S == 1) seq_len_input(nb, 1);
  return {T, n, k};
}

}  // namespace dpn::ops
