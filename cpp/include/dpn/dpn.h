// dpn_infer C++ engine: the public API (kept minimal and stable; internals live behind a pimpl).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dpn {

// Every error the engine raises derives from Error, so callers can catch one type.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The file is not a valid model.bin (or uses a newer format/opset than this engine knows).
class FormatError : public Error {
 public:
  using Error::Error;
};

// The file could not be opened or read; errno_value() says why (ENOENT: not found).
class IoError : public Error {
 public:
  IoError(const std::string& path, int errno_value, const std::string& message)
      : Error(message), path_(path), errno_(errno_value) {}
  const std::string& path() const { return path_; }
  int errno_value() const { return errno_; }

 private:
  std::string path_;
  int errno_;
};

// A request the model refuses (bad id under policy "error", NaN dense value, wrong shape...).
// The message starts with "field 'NAME': ".
class InputError : public Error {
 public:
  InputError(const std::string& field, const std::string& detail)
      : Error("field '" + field + "': " + detail), field_(field) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

enum class FieldKind { Sparse, MultiHot, Dense, Sequence };

// One field of the schema, as the model file declares it (docs/format.md §4.1).
struct FieldInfo {
  std::string name;
  FieldKind kind = FieldKind::Dense;
  int64_t dim = 0;
  int64_t vocab = 0;    // sparse / multi_hot
  int64_t max_len = 0;  // multi_hot (0 = no limit); sequence (its positions, >= 1)
};

// One field's data for a predict call, row-major.
// sparse: ids [rows] (cols = 1); multi_hot and sequence: ids [rows, cols] padded with -1;
// dense: values [rows, cols=dim].
struct FieldInput {
  const int64_t* ids = nullptr;
  const float* values = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  // sequence only, optional: ragged rows. ids holds cols values in all; row b's ids are
  // ids[offsets[b], offsets[b+1]) (rows + 1 non-decreasing offsets from 0 to cols).
  const int64_t* offsets = nullptr;
};

// A loaded model: immutable, shareable between threads; predict() keeps all scratch per call.
class Model {
 public:
  // Maps and validates the file; throws IoError or FormatError.
  static std::shared_ptr<const Model> load(const std::string& path);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  int64_t num_fields() const;
  const std::vector<FieldInfo>& fields() const;
  const std::string& metadata_json() const;

  // inputs: one per schema field, in schema order. out: batch floats (probabilities, or logits).
  // threads: how many threads this call may use (1 = the calling thread only). Throws InputError.
  void predict(const std::vector<FieldInput>& inputs, int64_t batch, float* out, bool logits,
               int threads = 1) const;

  struct Impl;

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dpn
