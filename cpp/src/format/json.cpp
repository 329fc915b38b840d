#include "format/json.h"

#include <charconv>
#include <cmath>
#include <unordered_set>

#include "dpn/dpn.h"

namespace dpn::format {

const Json* Json::find(const std::string& key) const {
  if (type_ != Type::Object) return nullptr;
  for (const auto& kv : obj_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const char* Json::type_name(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "a boolean";
    case Type::Number: return "a number";
    case Type::String: return "a string";
    case Type::Array: return "an array";
    case Type::Object: return "an object";
  }
  return "?";
}

class JsonParser {
 public:
  JsonParser(const char* s, size_t n, int max_depth) : s_(s), n_(n), max_depth_(max_depth) {}

  Json parse_document() {
    Json v = value(0);
    ws();
    if (i_ != n_) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  const char* s_;
  size_t n_;
  size_t i_ = 0;
  int max_depth_;

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError("metadata JSON: " + what + " at byte " + std::to_string(i_));
  }
  void ws() {
    while (i_ < n_ && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool lit(const char* w) {
    size_t k = 0;
    while (w[k]) {
      if (i_ + k >= n_ || s_[i_ + k] != w[k]) return false;
      ++k;
    }
    i_ += k;
    return true;
  }

  Json value(int depth) {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_));
    ws();
    if (i_ >= n_) fail("unexpected end of text");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      v.type_ = Json::Type::Object;
      ++i_;
      ws();
      if (i_ < n_ && s_[i_] == '}') {
        ++i_;
        return v;
      }
      std::unordered_set<std::string> seen;
      for (;;) {
        ws();
        if (i_ >= n_ || s_[i_] != '"') fail("expected a string key");
        std::string key = string();
        if (!seen.insert(key).second) fail("duplicate key \"" + key + "\"");
        ws();
        if (i_ >= n_ || s_[i_] != ':') fail("expected ':'");
        ++i_;
        Json member = value(depth + 1);
        v.obj_.emplace_back(std::move(key), std::move(member));
        ws();
        if (i_ < n_ && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < n_ && s_[i_] == '}') {
          ++i_;
          return v;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.type_ = Json::Type::Array;
      ++i_;
      ws();
      if (i_ < n_ && s_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        v.arr_.push_back(value(depth + 1));
        ws();
        if (i_ < n_ && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < n_ && s_[i_] == ']') {
          ++i_;
          return v;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.type_ = Json::Type::String;
      v.str_ = string();
      return v;
    }
    if (lit("true")) {
      v.type_ = Json::Type::Bool;
      v.bool_ = true;
      return v;
    }
    if (lit("false")) {
      v.type_ = Json::Type::Bool;
      v.bool_ = false;
      return v;
    }
    if (lit("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    fail("unexpected character");
  }

  Json number() {
    size_t start = i_;
    bool integral = true;
    if (s_[i_] == '-') ++i_;
    if (i_ >= n_) fail("bad number");
    if (s_[i_] == '0') {
      ++i_;
    } else if (s_[i_] >= '1' && s_[i_] <= '9') {
      while (i_ < n_ && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    } else {
      fail("bad number");
    }
    if (i_ < n_ && s_[i_] == '.') {
      integral = false;
      ++i_;
      if (i_ >= n_ || s_[i_] < '0' || s_[i_] > '9') fail("bad number");
      while (i_ < n_ && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    }
    if (i_ < n_ && (s_[i_] == 'e' || s_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < n_ && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= n_ || s_[i_] < '0' || s_[i_] > '9') fail("bad number");
      while (i_ < n_ && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    }
    Json v;
    v.type_ = Json::Type::Number;
    // from_chars: locale-independent. Out-of-range doubles parse as errors; map them to inf.
    auto r = std::from_chars(s_ + start, s_ + i_, v.num_);
    if (r.ec == std::errc::result_out_of_range) {
      v.num_ = s_[start] == '-' ? -HUGE_VAL : HUGE_VAL;
    } else if (r.ec != std::errc()) {
      fail("bad number");
    }
    if (integral) {
      auto ri = std::from_chars(s_ + start, s_ + i_, v.int_);
      v.is_int_ = ri.ec == std::errc();
    } else if (std::isfinite(v.num_) && v.num_ == std::floor(v.num_) && std::fabs(v.num_) < 9.0e15) {
      v.is_int_ = true;
      v.int_ = static_cast<int64_t>(v.num_);
    }
    return v;
  }

  unsigned hex4() {
    if (i_ + 4 > n_) fail("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      u <<= 4;
      if (h >= '0' && h <= '9')
        u |= unsigned(h - '0');
      else if (h >= 'a' && h <= 'f')
        u |= unsigned(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        u |= unsigned(h - 'A' + 10);
      else
        fail("bad \\u escape");
    }
    return u;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= n_) fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return out;
      if (c < 0x20) fail("control character in string");
      if (c != '\\') {
        out += char(c);
        continue;
      }
      if (i_ >= n_) fail("unterminated string");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && i_ + 6 <= n_ && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
            size_t save = i_;
            i_ += 2;
            unsigned lo = hex4();
            if (lo >= 0xDC00 && lo < 0xE000)
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else
              i_ = save;
          }
          // A lone surrogate is not a character: store U+FFFD so the text stays valid UTF-8.
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
          put_utf8(out, cp);
          break;
        }
        default: fail("bad escape in string");
      }
    }
  }
};

Json Json::parse(const char* text, size_t size, int max_depth) {
  JsonParser p(text, size, max_depth);
  return p.parse_document();
}

}  // namespace dpn::format
