#include "format/reader.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "dpn/dpn.h"
#include "format/crc32.h"
#include "format/utf8.h"
#include "kernels/half.h"

namespace dpn::format {

namespace {

constexpr uint64_t kHeaderSize = 128;
constexpr uint64_t kMaxMetadata = 64ull << 20;
constexpr uint64_t kMaxTensors = 1000000;
constexpr uint32_t kVersion = 1;
constexpr uint32_t kBom = 0x0A0B0C0D;
constexpr uint32_t kBomSwapped = 0x0D0C0B0A;

uint32_t rd32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | uint64_t(rd32(p + 4)) << 32; }

[[noreturn]] void bad(const std::string& msg) { throw FormatError("invalid model.bin: " + msg); }

std::string u(uint64_t v) { return std::to_string(v); }

size_t dtype_size(uint32_t d) {
  switch (d) {
    case 0: return 4;
    case 1: return 2;
    case 2: return 2;
    case 3: return 8;
    case 4: return 4;
    case 5: return 1;
    default: return 0;
  }
}

// Cursor over the tensor table that never reads past `end`.
struct Cursor {
  const uint8_t* base;
  uint64_t pos, end;
  uint64_t entry;
  void need(uint64_t n, const char* what) {
    if (n > end - pos)
      bad("tensor table entry " + u(entry) + " runs past the end of the table (reading " + what +
          "; the table must end at or before data_offset)");
  }
  uint32_t u32(const char* what) {
    need(4, what);
    uint32_t v = rd32(base + pos);
    pos += 4;
    return v;
  }
  uint64_t u64(const char* what) {
    need(8, what);
    uint64_t v = rd64(base + pos);
    pos += 8;
    return v;
  }
};

// An int8 tensor's scales (§3.2): `<name>.scale`, float32 or float16, per row (dims[:-1] + [1]) or
// per column (dims[:-2] + [1, dims[-1]]), every value finite and >= 0 (0: that row or column means
// zeros). float16 scales are widened to float32 here, once, so every kernel reads float32 scales.
void bind_scales(const Container& c, TensorInfo& t) {
  const std::string who = "int8 tensor '" + t.name + "'";
  if (t.dims.size() < 2) bad(who + " has " + u(t.dims.size()) + " dimension(s); int8 needs 2 or more");
  const std::string sname = t.name + ".scale";
  const TensorInfo* s = c.find(sname);
  if (!s) bad(who + " has no scales (tensor '" + sname + "')");
  if (s->dtype != DType::F32 && s->dtype != DType::F16)
    bad(who + ": its scales '" + sname + "' are " + dtype_name(s->dtype) + ", not float32 or float16");
  std::vector<int64_t> rows(t.dims), cols(t.dims);
  rows.back() = 1;
  cols[cols.size() - 2] = 1;
  auto shape = [](const std::vector<int64_t>& d) {
    std::string r = "[";
    for (size_t i = 0; i < d.size(); ++i) r += (i ? ", " : "") + std::to_string(d[i]);
    return r + "]";
  };
  if (s->dims != rows && s->dims != cols)
    bad(who + " " + shape(t.dims) + ": its scales '" + sname + "' have shape " + shape(s->dims) +
        ", expected " + shape(rows) + " (per row) or " + shape(cols) + " (per column)");
  const float* v = reinterpret_cast<const float*>(s->data);  // 64-byte aligned in the mapping
  const uint64_t n = s->nbytes / elem_size(s->dtype);
  if (s->dtype == DType::F16) {
    // Kept beside the mapping for as long as the ops point into it (Container::widened). Not charged
    // to the load bound: that bound already counts this tensor at its float32 size.
    std::vector<float>& w = c.widened[sname];
    w.resize(n);
    const auto* h = reinterpret_cast<const uint16_t*>(s->data);
    for (uint64_t i = 0; i < n; ++i) w[i] = kernels::half_to_f32(h[i], false);
    v = w.data();
    t.half_scales = true;
  }
  for (uint64_t i = 0; i < n; ++i)
    if (!(v[i] >= 0.0f) || v[i] == INFINITY)  // NaN fails the first test
      bad(who + ": scale " + u(i) + " is " + std::to_string(v[i]) + " (scales must be finite and >= 0)");
  t.scales = v;
  t.per_column = s->dims != rows;
}

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::I64: return "int64";
    case DType::I32: return "int32";
    case DType::I8: return "int8";
  }
  return "?";
}

Container read_container(const uint8_t* p, size_t real_size) {
  const uint64_t size = real_size;
  if (size < kHeaderSize) bad("file is " + u(size) + " bytes, shorter than the 128-byte header");
  if (std::memcmp(p, "DPNINFER", 8) != 0) bad("bad magic (not a dpn_infer model.bin file)");
  const uint32_t version = rd32(p + 8);
  const uint32_t bom = rd32(p + 12);
  if (bom == kBomSwapped)
    bad("big-endian file (byte-order mark 0x0D0C0B0A); only little-endian is supported");
  if (bom != kBom)
    bad("bad byte-order mark 0x" + [&] {
      char b[16];
      std::snprintf(b, sizeof b, "%08X", bom);
      return std::string(b);
    }());
  if (version > kVersion)
    throw FormatError(
        "model.bin format version " + u(version) +
        " is newer than this dpn_infer supports (1); upgrade dpn_infer (pip install -U dpn_infer)");
  if (version == 0) bad("format version 0 is not a valid version");
  const uint64_t file_size = rd64(p + 16), meta_off = rd64(p + 24), meta_size = rd64(p + 32);
  const uint64_t table_off = rd64(p + 40), count = rd64(p + 48), data_off = rd64(p + 56);
  const uint64_t data_size = rd64(p + 64);
  const uint32_t flags = rd32(p + 72), checksum = rd32(p + 76);
  if (flags != 0) bad("unsupported flags 0x" + std::to_string(flags) + " (version 1 requires 0)");
  if (file_size != size)
    bad("file_size field says " + u(file_size) + " bytes but the file has " + u(size) +
        " (truncated or padded file)");
  uint32_t crc = crc32(p, 76);
  crc = crc32(p + 80, size - 80, crc);
  if (crc != checksum) bad("checksum mismatch (the file is corrupted)");

  // Offsets and sizes, in the order of §1; every sum is checked against overflow by comparing
  // against the file size first (all values are ≤ size before being added).
  if (meta_off != kHeaderSize) bad("metadata_offset is " + u(meta_off) + ", expected 128");
  if (meta_size == 0 || meta_size > kMaxMetadata)
    bad("metadata_size " + u(meta_size) + " is outside (0, 64 MiB]");
  if (meta_size > size - meta_off) bad("metadata runs past the end of the file");
  const uint64_t meta_end = meta_off + meta_size;
  if (table_off < meta_end) bad("tensor_table_offset " + u(table_off) + " overlaps the metadata");
  if (table_off % 8 != 0) bad("tensor_table_offset " + u(table_off) + " is not a multiple of 8");
  if (table_off > size) bad("tensor_table_offset is past the end of the file");
  if (count > kMaxTensors) bad("tensor_count " + u(count) + " exceeds 1,000,000");
  if (data_off < table_off) bad("data_offset " + u(data_off) + " is before the tensor table");
  if (data_off % 64 != 0) bad("data_offset " + u(data_off) + " is not a multiple of 64");
  if (data_off > size) bad("data_offset is past the end of the file");
  if (data_size != size - data_off)
    bad("data_size " + u(data_size) + " is not file_size - data_offset (" + u(size - data_off) + ")");
  for (int k = 80; k < 128; ++k)
    if (p[k] != 0) bad("reserved header bytes are not zero");

  if (size_t bad_at = utf8_invalid_at(p + meta_off, meta_size); bad_at != meta_size)
    bad("metadata is not valid UTF-8 (byte " + u(bad_at) + " of the JSON text)");

  Container c;
  c.version = version;
  c.metadata.assign(reinterpret_cast<const char*>(p + meta_off), meta_size);
  c.tensors.reserve(static_cast<size_t>(std::min<uint64_t>(count, (data_off - table_off) / 20 + 1)));

  Cursor cur{p, table_off, data_off, 0};
  for (uint64_t e = 0; e < count; ++e) {
    cur.entry = e;
    TensorInfo t;
    const uint32_t name_len = cur.u32("name_len");
    if (name_len < 1 || name_len > 1024)
      bad("tensor table entry " + u(e) + ": name_len " + u(name_len) + " is outside [1, 1024]");
    cur.need(name_len, "name");
    if (utf8_invalid_at(p + cur.pos, name_len) != name_len)
      bad("tensor table entry " + u(e) + ": name is not valid UTF-8");
    t.name.assign(reinterpret_cast<const char*>(p + cur.pos), name_len);
    cur.pos += name_len;
    const std::string who = "tensor '" + t.name + "'";
    const uint32_t dtype = cur.u32("dtype");
    const size_t esize = dtype_size(dtype);
    if (esize == 0) bad(who + ": unknown dtype code " + u(dtype));
    t.dtype = static_cast<DType>(dtype);
    const uint32_t ndim = cur.u32("ndim");
    if (ndim > 8) bad(who + ": ndim " + u(ndim) + " exceeds 8");
    uint64_t elems = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < ndim; ++d) {
      const uint64_t dim = cur.u64("dims");
      if (dim > uint64_t(INT64_MAX)) bad(who + ": dimension " + u(d) + " is too large");
      t.dims.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && elems > UINT64_MAX / dim)
        overflow = true;
      else
        elems *= dim;
    }
    if (std::find(t.dims.begin(), t.dims.end(), 0) != t.dims.end()) {
      elems = 0;
      overflow = false;
    }
    const uint64_t rel = cur.u64("offset");
    const uint64_t nbytes = cur.u64("nbytes");
    if (rel % 64 != 0) bad(who + ": data offset " + u(rel) + " is not a multiple of 64");
    if (overflow || elems > UINT64_MAX / esize || elems * esize != nbytes)
      bad(who + ": nbytes " + u(nbytes) + " does not match its shape and dtype");
    if (rel > data_size || nbytes > data_size - rel)
      bad(who + ": data [" + u(rel) + ", +" + u(nbytes) + ") lies outside the data section");
    t.offset = data_off + rel;
    t.nbytes = nbytes;
    t.data = p + t.offset;
    if (!c.by_name.emplace(t.name, c.tensors.size()).second)
      bad("tensor name '" + t.name + "' appears twice");
    c.tensors.push_back(std::move(t));
  }

  // Overlap: sort non-empty ranges by start; each must end before the next begins.
  std::vector<const TensorInfo*> order;
  for (const auto& t : c.tensors)
    if (t.nbytes > 0) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < order.size(); ++k)
    if (order[k - 1]->offset + order[k - 1]->nbytes > order[k]->offset)
      bad("tensors '" + order[k - 1]->name + "' and '" + order[k]->name + "' overlap");
  for (auto& t : c.tensors)
    if (t.dtype == DType::I8) bind_scales(c, t);
  return c;
}

}  // namespace dpn::format
