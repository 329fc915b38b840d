#include "schema/schema.h"

#include <unordered_set>

namespace dpn::schema {

using format::Json;

std::string upgrade_advice() { return "upgrade dpn_infer (pip install -U dpn_infer)"; }

namespace {

[[noreturn]] void bad(const std::string& msg) { throw FormatError("invalid model schema: " + msg); }

const Json& req(const Json& f, const std::string& who, const char* key, Json::Type t) {
  const Json* v = f.find(key);
  if (!v) bad(who + ": missing key '" + key + "'");
  if (v->type() != t)
    bad(who + ": '" + key + "' must be " + Json::type_name(t) + ", got " + Json::type_name(v->type()));
  return *v;
}

int64_t req_int(const Json& f, const std::string& who, const char* key, int64_t min) {
  const Json& v = req(f, who, key, Json::Type::Number);
  if (!v.is_integer()) bad(who + ": '" + key + "' must be an integer");
  if (v.as_int() < min) bad(who + ": '" + key + "' must be >= " + std::to_string(min));
  return v.as_int();
}

}  // namespace

std::vector<Field> parse_schema(const Json& meta) {
  const Json* schema = meta.find("schema");
  if (!schema || !schema->is_object()) bad("metadata has no 'schema' object");
  const Json* fields = schema->find("fields");
  if (!fields || !fields->is_array()) bad("'schema.fields' must be an array");
  if (fields->items().empty()) bad("'schema.fields' is empty");
  std::vector<Field> out;
  std::unordered_set<std::string> names;
  size_t idx = 0;
  for (const Json& f : fields->items()) {
    std::string who = "field " + std::to_string(idx++);
    if (!f.is_object()) bad(who + " is not an object");
    Field fd;
    fd.info.name = req(f, who, "name", Json::Type::String).as_string();
    if (fd.info.name.empty()) bad(who + ": empty name");
    who = "field '" + fd.info.name + "'";
    if (!names.insert(fd.info.name).second) bad(who + " is declared twice");
    const std::string& kind = req(f, who, "kind", Json::Type::String).as_string();
    if (kind == "sparse")
      fd.info.kind = FieldKind::Sparse;
    else if (kind == "multi_hot")
      fd.info.kind = FieldKind::MultiHot;
    else if (kind == "dense")
      fd.info.kind = FieldKind::Dense;
    else if (kind == "sequence")
      fd.info.kind = FieldKind::Sequence;
    else if (kind == "timestamps")
      fd.info.kind = FieldKind::Timestamps;
    else
      throw FormatError("model.bin uses field kind '" + kind + "' (" + who +
                        "), unknown to this dpn_infer (opset " + std::to_string(kOpset) + "); " +
                        upgrade_advice());
    if (fd.info.kind == FieldKind::Timestamps) {  // no dim, vocab or policy: only session rules
      req(f, who, "sequence", Json::Type::String);
      fd.gap = req_int(f, who, "gap", 0);
      fd.max_sessions = req_int(f, who, "max_sessions", 1);
      fd.session_len = req_int(f, who, "session_len", 1);
      if (fd.max_sessions > kMaxSessionPositions || fd.session_len > kMaxSessionPositions ||
          fd.max_sessions * fd.session_len > kMaxSessionPositions)
        bad(who + ": max_sessions x session_len is more than " + std::to_string(kMaxSessionPositions));
      out.push_back(std::move(fd));
      continue;
    }
    fd.info.dim = req_int(f, who, "dim", 1);
    if (fd.info.dim > kMaxDim)
      bad(who + ": dim " + std::to_string(fd.info.dim) + " is more than " + std::to_string(kMaxDim));
    if (fd.info.kind != FieldKind::Dense) {
      fd.info.vocab = req_int(f, who, "vocab", 1);
      // Bounded so that vocab + 1 (the oov bucket) and id arithmetic never wrap; any real table is
      // far smaller (it must be in the file).
      if (fd.info.vocab > kMaxVocab)
        bad(who + ": vocab " + std::to_string(fd.info.vocab) + " is more than " +
            std::to_string(kMaxVocab));
      const std::string& pol = req(f, who, "policy", Json::Type::String).as_string();
      if (pol == "hash")
        fd.policy = Policy::Hash;
      else if (pol == "oov_bucket")
        fd.policy = Policy::OovBucket;
      else if (pol == "error")
        fd.policy = Policy::Error;
      else
        bad(who + ": unknown policy '" + pol + "' (expected hash, oov_bucket or error)");
    }
    if (fd.info.kind == FieldKind::MultiHot) {
      const std::string& pool = req(f, who, "pooling", Json::Type::String).as_string();
      if (pool == "sum")
        fd.pooling = Pooling::Sum;
      else if (pool == "mean")
        fd.pooling = Pooling::Mean;
      else
        bad(who + ": unknown pooling '" + pool + "' (expected sum or mean)");
      // max_len: 0 = no limit; absent is read as 0.
      fd.info.max_len = f.find("max_len") ? req_int(f, who, "max_len", 0) : 0;
    }
    if (fd.info.kind == FieldKind::Sequence) {
      fd.info.max_len = req_int(f, who, "max_len", 1);
      fd.truncate = f.find("truncate") ? req(f, who, "truncate", Json::Type::Bool).as_bool() : false;
      if (const Json* t = f.find("table"); t && !t->is_string())
        bad(who + ": 'table' must be a field name (a string)");
    }
    out.push_back(std::move(fd));
  }
  // Shared tables, once every field is known (the owner may come before or after the sequence).
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].info.kind != FieldKind::Sequence) continue;
    const Json* t = fields->items()[i].find("table");
    if (!t) continue;
    const std::string who = "field '" + out[i].info.name + "'";
    for (size_t k = 0; k < out.size(); ++k)
      if (out[k].info.name == t->as_string()) out[i].table = static_cast<int>(k);
    if (out[i].table < 0) bad(who + ": 'table' names '" + t->as_string() + "', which is not a field");
    const Field& o = out[size_t(out[i].table)];
    if (o.info.kind != FieldKind::Sparse) bad(who + ": 'table' must name a sparse field");
    if (o.info.vocab != out[i].info.vocab || o.info.dim != out[i].info.dim || o.policy != out[i].policy)
      bad(who + ": shares the table of '" + o.info.name + "' but its vocab, dim or policy differ");
  }
  // Timestamps: each names a sequence field, and no sequence has two.
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].info.kind != FieldKind::Timestamps) continue;
    const std::string who = "field '" + out[i].info.name + "'";
    const std::string& seq = fields->items()[i].find("sequence")->as_string();
    for (size_t k = 0; k < out.size(); ++k)
      if (out[k].info.name == seq) out[i].sequence = static_cast<int>(k);
    if (out[i].sequence < 0 || out[size_t(out[i].sequence)].info.kind != FieldKind::Sequence)
      bad(who + ": 'sequence' must name a sequence field, got '" + seq + "'");
    for (size_t k = 0; k < i; ++k)
      if (out[k].info.kind == FieldKind::Timestamps && out[k].sequence == out[i].sequence)
        bad(who + ": sequence '" + seq + "' already has timestamps");
  }
  return out;
}

}  // namespace dpn::schema
