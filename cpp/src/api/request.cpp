#include "api/request.h"

#include <cstring>
#include <string>

#include "ops/seq.h"

namespace dpn::api {

namespace {
template <class T>
T* keep(std::vector<std::unique_ptr<T[]>>& arrays, size_t n) {
  arrays.emplace_back(new T[n ? n : 1]);
  return arrays.back().get();
}
// memcpy, but a field of no ids may give a null pointer, which memcpy must never see.
template <class T>
void copy(T* dst, const T* src, size_t n) {
  if (n) std::memcpy(dst, src, sizeof(T) * n);
}
}  // namespace

std::vector<int64_t> users_of_rows(const SharedInputs& shared, int64_t batch) {
  const int64_t U = shared.users;
  if (!shared.groups) {
    if (U != 1)
      throw RequestError("request: " + std::to_string(U) +
                         " users but no groups (without groups one user owns every row)");
    return std::vector<int64_t>(size_t(batch), 0);
  }
  if (U < 0) throw RequestError("request: users must be >= 0, got " + std::to_string(U));
  const int64_t* g = shared.groups;
  if (g[0] != 0) throw RequestError("request: groups must start at 0, got " + std::to_string(g[0]));
  for (int64_t u = 0; u < U; ++u)
    // Compared, not subtracted: every offset then lies in [0, batch] by induction.
    if (g[u + 1] < g[u] || g[u + 1] > batch)
      throw RequestError("request: groups must be non-decreasing offsets into the " +
                         std::to_string(batch) + " candidate rows; groups[" + std::to_string(u + 1) +
                         "] = " + std::to_string(g[u + 1]) + " after " + std::to_string(g[u]));
  if (g[U] != batch)
    throw RequestError("request: groups end at " + std::to_string(g[U]) + ", but the batch has " +
                       std::to_string(batch) + " candidate rows (groups[users] must equal it)");
  std::vector<int64_t> of(static_cast<size_t>(batch));
  for (int64_t u = 0; u < U; ++u)
    for (int64_t b = g[u]; b < g[u + 1]; ++b) of[size_t(b)] = u;
  return of;
}

namespace {
// A truncating sequence field's user rows reduced to the ids the model keeps (ops/seq.h), as a
// ragged input of the same rows: at most max_len ids a row.
FieldInput kept_ids(const FieldInput& u, int64_t max_len,
                    std::vector<std::unique_ptr<int64_t[]>>& arrays) {
  int64_t total = 0;
  for (int64_t r = 0; r < u.rows; ++r) {
    int64_t n = 0;
    ops::seq_row(u, r, &n);
    total += n < max_len ? n : max_len;
  }
  int64_t* offs = keep(arrays, size_t(u.rows) + 1);
  int64_t* ids = keep(arrays, size_t(total));
  offs[0] = 0;
  for (int64_t r = 0; r < u.rows; ++r) {
    int64_t n = 0;
    const int64_t* row = ops::seq_row(u, r, &n);
    int64_t* dst = ids + offs[r];
    offs[r + 1] =
        offs[r] + ops::for_each_kept_id(row, n, max_len, [&](int64_t t, int64_t id) { dst[t] = id; });
  }
  return FieldInput{ids, nullptr, u.rows, offs[u.rows], offs};
}
}  // namespace

Broadcast broadcast(const std::vector<schema::Field>& fields, const std::vector<FieldInput>& inputs,
                    int64_t batch, const std::vector<FieldInput>& user,
                    const std::vector<char>& is_shared, const std::vector<int64_t>& user_of_row) {
  Broadcast out{inputs, {}, {}};
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!is_shared[i]) continue;
    const schema::Field& f = fields[i];
    // A field laid out by sessions keeps every id (the session caps bound what is read).
    const bool trims = f.info.kind == FieldKind::Sequence && f.truncate && f.sessions < 0;
    const FieldInput u = trims ? kept_ids(user[i], f.info.max_len, out.ids) : user[i];
    FieldInput& in = out.inputs[i];
    in = FieldInput{nullptr, nullptr, batch, u.cols};
    if (u.offsets) {  // ragged: each row's ids again, with new offsets
      int64_t total = 0;
      for (int64_t r : user_of_row) total += u.offsets[r + 1] - u.offsets[r];
      int64_t* offs = keep(out.ids, size_t(batch) + 1);
      int64_t* ids = keep(out.ids, size_t(total));
      offs[0] = 0;
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t r = user_of_row[size_t(b)], n = u.offsets[r + 1] - u.offsets[r];
        copy(ids + offs[b], u.ids + u.offsets[r], size_t(n));
        offs[b + 1] = offs[b] + n;
      }
      in.cols = total;
      in.ids = ids;
      in.offsets = offs;
      continue;
    }
    const size_t row = size_t(u.cols);  // validated: users x cols fits in memory
    if (u.values) {
      float* v = keep(out.values, size_t(batch) * row);
      for (int64_t b = 0; b < batch; ++b)
        copy(v + size_t(b) * row, u.values + size_t(user_of_row[size_t(b)]) * row, row);
      in.values = v;
    } else {
      int64_t* ids = keep(out.ids, size_t(batch) * row);
      for (int64_t b = 0; b < batch; ++b)
        copy(ids + size_t(b) * row, u.ids + size_t(user_of_row[size_t(b)]) * row, row);
      in.ids = ids;
    }
  }
  return out;
}

}  // namespace dpn::api
