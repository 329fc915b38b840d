/* dpn_infer C ABI: for servers written in C or any language with a C FFI (Go, Rust, Java, ...).
 *
 * Opaque handles, plain C types, status codes; no C++ type or exception crosses this boundary
 * (every C++ exception, std::bad_alloc included, becomes a status code).
 *
 * Errors: every function that can fail returns dpn_status. On failure, dpn_last_error() returns a
 * message (e.g. "field 'user': id 12 out of range [0, 10) under policy 'error'") that belongs to the
 * calling thread and stays valid until that thread's next dpn_* call. On success it is "".
 *
 * Thread safety: a dpn_model is immutable. dpn_model_predict and every dpn_model_* query may run on
 * any number of threads at once with the same handle. dpn_model_free must not race with other calls
 * on the same handle (use dpn_model_share to give each owner its own handle; the model is freed
 * when the last handle is). dpn_holder_get/set/load are thread-safe; dpn_holder_free, like
 * dpn_model_free, must not race with other calls on the same holder.
 *
 * Compatibility: within major version DPN_C_ABI_VERSION, functions are only added, and structs with
 * a `reserved` tail only gain members in place of reserved slots (which callers must zero).
 */
#ifndef DPN_C_H_
#define DPN_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DPN_C_ABI_VERSION 1

typedef enum dpn_status {
  DPN_OK = 0,
  DPN_ERR_IO = 1,               /* the file could not be opened / read */
  DPN_ERR_FORMAT = 2,           /* not a valid model.bin, or a newer format/opset */
  DPN_ERR_INPUT = 3,            /* the request is refused; the message names the field */
  DPN_ERR_INVALID_ARGUMENT = 4, /* null pointer, threads < 1, misaligned borrowed buffer, ... */
  DPN_ERR_OUT_OF_MEMORY = 5,
  DPN_ERR_INTERNAL = 6
} dpn_status;

typedef enum dpn_field_kind {
  DPN_SPARSE = 0,
  DPN_MULTI_HOT = 1,
  DPN_DENSE = 2,
  DPN_SEQUENCE = 3,  /* opset 2: a behaviour sequence (docs/format.md §4.1) */
  DPN_TIMESTAMPS = 4 /* opset 5: a sequence field's timestamps, int64 seconds (docs/format.md §4.1) */
} dpn_field_kind;

/* load_memory flags */
#define DPN_LOAD_COPY 0   /* copy the bytes; the caller may free them when the call returns */
#define DPN_LOAD_BORROW 1 /* zero-copy; 64-byte aligned, valid and unchanged while any handle lives */

typedef struct dpn_model dpn_model;
typedef struct dpn_holder dpn_holder;

typedef struct dpn_field_info {
  const char* name; /* valid while the model lives */
  int32_t kind;     /* dpn_field_kind; -1 for a kind newer than this header (later opsets) */
  int64_t dim;
  int64_t vocab;   /* sparse / multi_hot */
  int64_t max_len; /* multi_hot: 0 = no limit; sequence: its positions (>= 1) */
} dpn_field_info;

/* One field's caller-owned data, row-major, never copied. sparse: ids [rows] (cols = 1);
 * multi_hot and sequence: ids [rows, cols] padded with -1; dense: values [rows, cols = dim].
 * offsets (sequence only, else NULL): ragged rows, row b's ids are ids[offsets[b], offsets[b+1]),
 * rows + 1 non-decreasing offsets from 0 to cols (= the number of ids). */
typedef struct dpn_field_input {
  const int64_t* ids;
  const float* values;
  int64_t rows;
  int64_t cols;
  const int64_t* offsets;
  const void* reserved[3]; /* must be NULL */
} dpn_field_input;

/* dpn_predict_options.flags */
#define DPN_PREDICT_ALLOW_NAN 1 /* return a NaN score instead of failing with DPN_ERR_INPUT */

typedef struct dpn_predict_options {
  int32_t threads; /* >= 1; 1 = only the calling thread */
  int32_t logits;  /* 0: probabilities, 1: logits */
  int64_t flags;   /* 0 or DPN_PREDICT_ALLOW_NAN; was reserved[0], so zeroed callers get the default */
  int64_t reserved[1]; /* must be 0 */
} dpn_predict_options;

/* dpn_model_load_ex / dpn_holder_load_ex options; NULL = defaults (map the file, default bound). */
typedef struct dpn_load_options {
  int32_t flags;            /* DPN_LOAD_MAP (0) or DPN_LOAD_READ: read the file into memory, so it
                               may be rewritten in place while loaded; | DPN_LOAD_BF16_GEMM or
                               DPN_LOAD_NO_BF16_GEMM: LoadOptions::bf16_gemm On / Off (bfloat16
                               GEMMs for bfloat16 weights; neither: as the file records) | optionally
                               DPN_LOAD_INT8_GEMM or DPN_LOAD_NO_INT8_GEMM: LoadOptions::int8_gemm
                               On / Off (int8 GEMMs for int8 weights; neither: as recorded) */
  int32_t reserved32;       /* must be 0 */
  uint64_t max_alloc_bytes; /* what the load may allocate beyond the file; 0 = 64 MiB + 4 x size */
  int64_t reserved[2];      /* must be 0 */
} dpn_load_options;
#define DPN_LOAD_MAP 0
#define DPN_LOAD_READ 1
#define DPN_LOAD_BF16_GEMM 2
#define DPN_LOAD_NO_BF16_GEMM 4
#define DPN_LOAD_INT8_GEMM 16
#define DPN_LOAD_NO_INT8_GEMM 32

/* "MAJOR.MINOR.PATCH" of the linked library. */
const char* dpn_version(void);
int dpn_c_abi_version(void);
/* The calling thread's last error message ("" after a success). Never NULL. */
const char* dpn_last_error(void);
/* A fixed name for a status, e.g. "DPN_ERR_FORMAT". */
const char* dpn_status_name(dpn_status status);

/* Load and fully validate a model; *out gets a new handle (free with dpn_model_free). Anything but
 * a regular file (FIFO, device, directory) is refused with DPN_ERR_IO before it is read. */
dpn_status dpn_model_load(const char* path, dpn_model** out);
dpn_status dpn_model_load_ex(const char* path, const dpn_load_options* options, dpn_model** out);
dpn_status dpn_model_load_memory(const void* data, size_t size, int flags, dpn_model** out);
/* A second handle to the same model (shared, reference-counted). */
dpn_status dpn_model_share(const dpn_model* model, dpn_model** out);
/* NULL is a no-op. */
void dpn_model_free(dpn_model* model);

int64_t dpn_model_num_fields(const dpn_model* model);
dpn_status dpn_model_field(const dpn_model* model, int64_t index, dpn_field_info* out);
/* The index of field `name`, or -1. */
int64_t dpn_model_field_index(const dpn_model* model, const char* name);
/* The metadata JSON (docs/format.md §4); valid while the model lives. */
const char* dpn_model_metadata_json(const dpn_model* model);

/* out[0..batch) = probabilities (or logits). inputs: num_inputs == num_fields, schema order.
 * options: NULL = { threads 1, probabilities }. Every caller-supplied size (and rows x cols) is
 * checked; a NaN score fails with DPN_ERR_INPUT ("the score of N rows is NaN (rows ...)"; out is
 * filled) unless options->flags has DPN_PREDICT_ALLOW_NAN. */
dpn_status dpn_model_predict(const dpn_model* model, const dpn_field_input* inputs, size_t num_inputs,
                             int64_t batch, float* out, const dpn_predict_options* options);

/* Ranking requests (docs/cpp.md, "Ranking requests"): fields common to every candidate of a user
 * given once per user; the engine computes what depends only on them once per user. */
typedef struct dpn_shared_input {
  int64_t field;         /* schema index (dpn_model_field_index) */
  dpn_field_input input; /* as for predict, with input.rows = the request's users */
} dpn_shared_input;

typedef struct dpn_request {
  size_t struct_size;            /* sizeof(dpn_request) as the caller was compiled: later versions append
                                    members, and bytes past the ones this library knows must be zero */
  const dpn_field_input* inputs; /* num_inputs == num_fields, schema order: the candidate rows;
                                    a shared field's entry is all zero (NULL pointers, 0 rows) */
  size_t num_inputs;
  int64_t batch;                  /* candidate rows */
  const dpn_shared_input* shared; /* num_shared entries (NULL when 0), at most one per field */
  size_t num_shared;
  const int64_t* groups; /* users + 1 non-decreasing offsets from 0 to batch (user u's candidates
                            are rows [groups[u], groups[u + 1])), or NULL: one user, users = 1 */
  int64_t users;
} dpn_request;

/* out[0..request->batch) as dpn_model_predict gives for the batch that repeats each user's shared
 * values on its rows. A request whose shape is wrong (groups that do not cover the rows, a field
 * shared twice or given both ways, shared rows != users) fails with DPN_ERR_INPUT naming it; a bad
 * struct_size with DPN_ERR_INVALID_ARGUMENT. */
dpn_status dpn_model_predict_request(const dpn_model* model, const dpn_request* request, float* out,
                                     const dpn_predict_options* options);

/* Hot reload slot (dpn::ModelHolder). model may be NULL (empty slot). */
dpn_status dpn_holder_create(const dpn_model* model, dpn_holder** out);
void dpn_holder_free(dpn_holder* holder);
/* *out: a new handle to the current model (free it when the request is done), or NULL if empty. */
dpn_status dpn_holder_get(const dpn_holder* holder, dpn_model** out);
/* Swap in `model` (the holder shares it; the caller keeps its own handle). */
dpn_status dpn_holder_set(dpn_holder* holder, const dpn_model* model);
/* Load and validate `path`, then swap it in; on failure the current model stays. */
dpn_status dpn_holder_load(dpn_holder* holder, const char* path);
dpn_status dpn_holder_load_ex(dpn_holder* holder, const char* path, const dpn_load_options* options);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DPN_C_H_ */
