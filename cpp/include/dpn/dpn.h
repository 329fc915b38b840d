// dpn_infer C++ engine: the public API (kept minimal and stable; internals live behind a pimpl).
//
// Thread safety, in one paragraph: a loaded Model is immutable. Every const member function of Model
// may be called from any number of threads at once, on the same Model, without locks (predict keeps
// all of its scratch per call). A Batch is a plain view: fill it on one thread, then any number of
// threads may pass it to predict() as long as nobody modifies it meanwhile. ModelHolder (below) may be
// read and swapped from any thread. Nothing here keeps global mutable state except the shared worker
// pool behind `threads` > 1, which is itself thread-safe and fork-safe.
//
// Errors: every failure throws a dpn::Error subclass (FormatError, IoError, InputError), or
// std::invalid_argument for a programming error (null output pointer, threads < 1), or
// std::bad_alloc. Nothing ever aborts the process on a bad file or a bad request.
//
// Compatibility: see docs/cpp.md. Source compatibility of this header is kept within a major
// version; the binary interface that is promised to stay stable is the C ABI in dpn_c.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#define DPN_VERSION_MAJOR 0
#define DPN_VERSION_MINOR 1
#define DPN_VERSION_PATCH 0

namespace dpn {

// "MAJOR.MINOR.PATCH" of the library actually linked (may differ from the header's macros when a
// shared library is swapped underneath).
const char* version();

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

 protected:
  struct Whole {};  // a message that names no field (NonFiniteScoreError)
  InputError(Whole, const std::string& message) : Error(message) {}

 private:
  std::string field_;
};

// A score came out NaN (an input overflowed float32 inside the model, e.g. a dense value of 1e30
// where PyTorch gives NaN too). Raised by predict unless PredictOptions::allow_nan; rows() lists the
// first rows at fault (at most 10), num_rows() how many there are. field() is "".
class NonFiniteScoreError : public InputError {
 public:
  NonFiniteScoreError(std::vector<int64_t> rows, int64_t num_rows);
  const std::vector<int64_t>& rows() const { return rows_; }
  int64_t num_rows() const { return num_rows_; }

 private:
  std::vector<int64_t> rows_;
  int64_t num_rows_;
};

// A ranking request whose shape is wrong: groups that do not cover the candidate rows, a field
// shared twice or given both ways, users that do not match (docs/cpp.md, "Ranking requests").
// field() is "".
class RequestError : public InputError {
 public:
  explicit RequestError(const std::string& message) : InputError(Whole{}, message) {}
};

enum class FieldKind { Sparse, MultiHot, Dense, Sequence, Timestamps };

// One field of the schema, as the model file declares it (docs/format.md §4.1).
struct FieldInfo {
  std::string name;
  FieldKind kind = FieldKind::Dense;
  int64_t dim = 0;
  int64_t vocab = 0;    // sparse / multi_hot
  int64_t max_len = 0;  // multi_hot (0 = no limit); sequence (its positions, >= 1)
};

// One field's data for a predict call, row-major, owned by the caller (never copied).
// sparse: ids [rows] (cols = 1); multi_hot and sequence: ids [rows, cols] padded with -1;
// dense: values [rows, cols=dim]; timestamps (opset 5): int64 seconds in `ids`, laid out exactly
// as the ids of its sequence field (same cols, the same offsets when ragged).
struct FieldInput {
  const int64_t* ids = nullptr;
  const float* values = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  // sequence and timestamps only, optional: ragged rows. ids holds cols values in all; row b's ids are
  // ids[offsets[b], offsets[b+1]) (rows + 1 non-decreasing offsets from 0 to cols).
  const int64_t* offsets = nullptr;
};

// A field of a ranking request given once per user instead of once per candidate row.
struct SharedInput {
  int64_t field = -1;  // schema index (Model::field_index)
  FieldInput input;    // as FieldInput, with input.rows = the request's users
};

// The shared part of a ranking request (docs/cpp.md, "Ranking requests"): the fields common to
// every candidate of a user, passed once per user, and which candidate rows belong to which user.
// The engine computes what depends only on these fields once per user; the scores equal those of
// the batch that repeats each user's values on every one of its rows.
struct SharedInputs {
  std::vector<SharedInput> fields;  // at most one per schema field; any field may be shared
  // users + 1 non-decreasing offsets from 0 to the batch size: user u's candidates are rows
  // [groups[u], groups[u + 1]) (a user may have none). nullptr: one user owns every row, and
  // users must be 1.
  const int64_t* groups = nullptr;
  int64_t users = 1;
};

// How a model file in memory is held (Model::load_from_memory).
enum class BufferMode {
  Copy,    // the engine copies the bytes; the caller may free its buffer as soon as load returns
  Borrow,  // zero-copy: the caller keeps the bytes alive and unchanged for the Model's whole life
};

// Per-call options of predict.
struct PredictOptions {
  int threads = 1;         // intra-op threads for this call, >= 1 (1 = only the calling thread)
  bool logits = false;     // false: sigmoid probabilities; true: raw logits
  bool allow_nan = false;  // false: a NaN score throws NonFiniteScoreError; true: it is returned
};

// How Model::load reads a file (docs/cpp.md, "Files").
enum class LoadMode {
  Map,   // memory-mapped, read in place: deploy by writing a new file and renaming it over the old
  Copy,  // read into memory the Model owns: the file may then be rewritten in place (cp) safely
};

enum class Bf16Gemm { Recorded, On, Off };
enum class Int8Gemm { Recorded, On, Off };

struct LoadOptions {
  LoadMode mode = LoadMode::Map;
  // What a load may allocate beyond the file itself (packed weights, copies), in bytes; a file that
  // needs more is refused with FormatError. 0: the default, 64 MiB + 4 x the file's size.
  uint64_t max_alloc_bytes = 0;
  // How linear and dylinear layers whose weights the file stores as bfloat16 compute. On: bfloat16
  // GEMMs, their inputs rounded to bfloat16, float32 accumulation (AVX512_BF16 vdpbf16ps where the
  // CPU has it, the same arithmetic in float32 elsewhere): about twice the float32 speed, results
  // within bfloat16 rounding of Off's. Off: every op widens bfloat16 weights to float32 and computes
  // in float32. Recorded (default): what the file's metadata asks for (`"arithmetic": "bf16"`, which
  // dpn_infer.save(precision="bf16") writes: On), else Off (files written before that key existed
  // keep the outputs recorded for them).
  Bf16Gemm bf16_gemm = Bf16Gemm::Recorded;
  // The same for weights the file stores as int8. On: int8 GEMMs, each weight quantized per output
  // column at load (the stored values for a linear weight), each GEMM's left operand quantized per
  // row at run time, exact int32 sums (AVX512_VNNI vpdpbusd where the CPU has it, the same integer
  // arithmetic in plain C++ elsewhere), float32 epilogue. Off: int8 weights dequantized to float32 at
  // load, float32 arithmetic. Recorded (default): On when the metadata says `"arithmetic": "int8"`
  // (dpn_infer.save(precision="int8") writes it), else Off (older int8 files keep their outputs).
  Int8Gemm int8_gemm = Int8Gemm::Recorded;
};

class Batch;

// A loaded model: immutable, shared by std::shared_ptr between any number of threads.
class Model {
 public:
  // Thread-safe (no shared state). Maps the file read-only and validates it completely (header,
  // every offset and size, checksum, metadata, every node). Throws IoError or FormatError.
  // The file is memory-mapped: replace it by writing a new file and renaming it over the old one;
  // never truncate or rewrite a file in place while a process has it loaded.
  // Anything but a regular file (a FIFO, a device, a directory) is refused before it is read, so
  // a load never blocks; so is a path holding a NUL byte.
  static std::shared_ptr<const Model> load(const std::string& path);
  static std::shared_ptr<const Model> load(const std::string& path, const LoadOptions& options);

  // Thread-safe. Same validation as load(path), from bytes in memory (a model fetched over the
  // network, embedded in the binary, ...). Copy: the bytes are copied into an aligned buffer the
  // Model owns. Borrow: no copy; `data` must be 64-byte aligned (std::invalid_argument otherwise)
  // and must stay valid and unchanged until the last shared_ptr to the Model is gone.
  static std::shared_ptr<const Model> load_from_memory(const void* data, size_t size,
                                                       BufferMode mode = BufferMode::Copy);
  static std::shared_ptr<const Model> load_from_memory(const void* data, size_t size, BufferMode mode,
                                                       const LoadOptions& options);

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Schema inspection. Thread-safe; the references stay valid as long as the Model lives.
  int64_t num_fields() const;
  const std::vector<FieldInfo>& fields() const;
  int64_t field_index(const std::string& name) const;  // -1 if the model has no such field
  const std::string& metadata_json() const;            // docs/format.md §4, as stored in the file
  int64_t opset() const;                               // the opset the file declares
  // The model file's bytes as loaded (mapped or owned), valid while the Model lives: what
  // load_from_memory takes to make the same model elsewhere (e.g. sent to another process).
  const uint8_t* file_data() const;
  size_t file_size() const;

  // Thread-safe; any number of concurrent calls on one Model. Scores `batch` rows into out[0..batch).
  // inputs: one per schema field, in schema order (see FieldInput). Validates everything before any
  // work and throws InputError naming the field; `out` is caller-owned and may be written partly
  // only if an exception other than InputError escapes (e.g. std::bad_alloc) or on
  // NonFiniteScoreError (an InputError thrown after scoring, when a score is NaN and
  // options.allow_nan is false; the other rows' scores are in `out`).
  void predict(const std::vector<FieldInput>& inputs, int64_t batch, float* out, bool logits,
               int threads = 1) const;
  void predict(const std::vector<FieldInput>& inputs, int64_t batch, float* out,
               const PredictOptions& options) const;
  void predict(const FieldInput* inputs, size_t num_inputs, int64_t batch, float* out,
               const PredictOptions& options = {}) const;
  // Thread-safe as above; the batch must have been made for this Model's schema (Batch(model, ...))
  // or for one with the same field names in the same order.
  void predict(const Batch& batch, float* out, const PredictOptions& options = {}) const;
  // A ranking request, thread-safe as above: inputs (one per schema field, schema order) holds the
  // candidate rows; each field of `shared` is left unset there (FieldInput{}) and given once per
  // user instead. Throws RequestError for a request whose shape is wrong, InputError naming the
  // field for a bad field (a shared field's rows must be shared.users).
  void predict(const std::vector<FieldInput>& inputs, int64_t batch, const SharedInputs& shared,
               float* out, const PredictOptions& options = {}) const;

  struct Impl;

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A request: views of caller-owned arrays, one per field, set by name. Never copies the data; the
// arrays must stay valid until predict() returns. Not thread-safe to modify; const use (predict) from
// many threads is fine. Cheap to make per request (one small vector).
class Batch {
 public:
  // rows: the batch size. Every field starts unset; predict() throws InputError for a field still
  // unset (unless rows == 0).
  Batch(const Model& model, int64_t rows);

  // Throws InputError when the model has no field `name` or it has the wrong kind.
  Batch& set_ids(const std::string& name, const int64_t* ids, int64_t cols = 1);  // sparse, multi_hot,
                                                                                  // sequence (padded)
  // A sequence field as ragged rows: row b's ids are ids[offsets[b], offsets[b+1]); offsets has
  // rows + 1 entries from 0 to `total`. Throws InputError for a field that is not a sequence.
  Batch& set_ragged(const std::string& name, const int64_t* ids, const int64_t* offsets, int64_t total);
  Batch& set_values(const std::string& name, const float* values, int64_t cols);  // dense
  // By schema position (no name lookup; for hot paths). Throws std::out_of_range.
  Batch& set(int64_t field_index, const FieldInput& input);

  // Ranking requests (docs/cpp.md): a field given once per user, one row per user (1 unless
  // set_groups says otherwise), instead of once per row. Setting a field one way unsets it the
  // other way. Same checks and arguments as the setters above.
  Batch& set_shared_ids(const std::string& name, const int64_t* ids, int64_t cols = 1);
  Batch& set_shared_ragged(const std::string& name, const int64_t* ids, const int64_t* offsets,
                           int64_t total);
  Batch& set_shared_values(const std::string& name, const float* values, int64_t cols);
  Batch& set_shared(int64_t field_index, const FieldInput& input);
  // `users` users own the rows: user u's are rows [offsets[u], offsets[u + 1]) (users + 1 offsets
  // from 0 to rows(), checked by predict). The default: one user owns every row.
  Batch& set_groups(const int64_t* offsets, int64_t users);

  int64_t rows() const { return rows_; }
  const std::vector<FieldInput>& inputs() const { return inputs_; }
  const SharedInputs& shared() const { return shared_; }

 private:
  const std::vector<FieldInfo>* fields_;
  int64_t rows_;
  std::vector<FieldInput> inputs_;
  SharedInputs shared_;
  int64_t index_of(const std::string& name) const;
  int64_t checked(const std::string& name, bool ids, bool ragged) const;
  void unshare(int64_t field_index);
};

// Hot reload: one slot holding the current model. Request threads call get() once per request and
// use the returned shared_ptr for the whole request; a reload thread calls load() or set(). Requests
// in flight finish on the model they got; new ones see the new model. A failed load() throws and
// keeps the current model. All members are thread-safe. The model a swap replaces is freed when its
// last request drops it; set()/load() return it so the reloading thread can hold it until then
// (keeps the unmapping off request threads; see docs/cpp.md).
class ModelHolder {
 public:
  ModelHolder() = default;
  explicit ModelHolder(std::shared_ptr<const Model> model);
  ModelHolder(const ModelHolder&) = delete;
  ModelHolder& operator=(const ModelHolder&) = delete;

  std::shared_ptr<const Model> get() const;                              // null until a model is set
  std::shared_ptr<const Model> set(std::shared_ptr<const Model> model);  // returns the previous one
  // Loads and validates `path` first (outside any lock), then swaps it in; returns the previous one.
  std::shared_ptr<const Model> load(const std::string& path);
  std::shared_ptr<const Model> load(const std::string& path, const LoadOptions& options);

 private:
  std::shared_ptr<const Model> model_;  // accessed only through std::atomic_load/atomic_store
};

}  // namespace dpn
