/* The C ABI, called from C (compiled as C11): load, schema, predict vs the Python side's outputs,
 * status codes and messages, shared handles, the reload holder.  Usage: c_api_test DATA_DIR */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dpn/dpn_c.h"

static int failures = 0;
#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              dpn_last_error());                                                               \
      ++failures;                                                                              \
    }                                                                                          \
  } while (0)

static char* path_join(const char* dir, const char* name) {
  char* p = malloc(strlen(dir) + strlen(name) + 2);
  sprintf(p, "%s/%s", dir, name);
  return p;
}

static void* read_all(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void* buf = malloc(n > 0 ? (size_t)n : 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

/* A batch file (make_data.py) arranged in the model's schema order. */
typedef struct {
  dpn_field_input in[16];
  size_t n;
  int64_t rows;
  void* raw;
} batch_t;

static void load_batch(const char* path, const dpn_model* m, batch_t* b) {
  size_t size, pos = 8;
  unsigned char* raw = read_all(path, &size);
  uint32_t nf;
  memcpy(&nf, raw + 4, 4);
  memset(b, 0, sizeof *b);
  b->raw = raw;
  b->n = (size_t)dpn_model_num_fields(m);
  for (uint32_t i = 0; i < nf; ++i) {
    uint32_t len, type;
    int64_t rows, cols;
    char name[256];
    memcpy(&len, raw + pos, 4);
    memcpy(name, raw + pos + 4, len);
    name[len] = 0;
    pos += 4 + len;
    memcpy(&type, raw + pos, 4);
    memcpy(&rows, raw + pos + 4, 8);
    memcpy(&cols, raw + pos + 12, 8);
    pos += 20;
    int64_t idx = dpn_model_field_index(m, name);
    if (idx >= 0) {
      /* The file's data is 4-byte aligned at best: copy into aligned arrays. */
      size_t nb = (size_t)(rows * cols) * (type == 0 ? 8 : 4);
      void* data = malloc(nb ? nb : 8);
      memcpy(data, raw + pos, nb);
      b->in[idx].rows = rows;
      b->in[idx].cols = cols;
      if (type == 0)
        b->in[idx].ids = data;
      else
        b->in[idx].values = data;
    }
    pos += (size_t)(rows * cols) * (type == 0 ? 8 : 4);
    b->rows = rows;
  }
}

static void free_batch(batch_t* b) {
  for (size_t i = 0; i < b->n; ++i) {
    free((void*)b->in[i].ids);
    free((void*)b->in[i].values);
  }
  free(b->raw);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: c_api_test DATA_DIR\n");
    return 2;
  }
  const char* dir = argv[1];
  char* pa = path_join(dir, "tiny_a.bin");
  char* pb = path_join(dir, "tiny_b.bin");
  char* pbatch = path_join(dir, "tiny.batch");
  char* plog = path_join(dir, "tiny_a.logits");
  char* pbad = path_join(dir, "format/bad_magic.error.bin");
  char* pmissing = path_join(dir, "missing.bin");

  CHECK(dpn_c_abi_version() == DPN_C_ABI_VERSION);
  CHECK(strcmp(dpn_version(), "0.1.0") == 0);

  dpn_model* m = NULL;
  CHECK(dpn_model_load(pa, &m) == DPN_OK);
  CHECK(m != NULL);
  CHECK(strcmp(dpn_last_error(), "") == 0);
  CHECK(dpn_model_num_fields(m) == 5);
  dpn_field_info fi;
  CHECK(dpn_model_field(m, 1, &fi) == DPN_OK);
  CHECK(strcmp(fi.name, "tags") == 0 && fi.kind == DPN_MULTI_HOT && fi.dim == 2 && fi.max_len == 4);
  CHECK(dpn_model_field(m, 5, &fi) == DPN_ERR_INVALID_ARGUMENT);
  CHECK(dpn_model_field_index(m, "ctx") == 4);
  CHECK(dpn_model_field_index(m, "nope") == -1);
  CHECK(dpn_model_metadata_json(m)[0] == '{');

  batch_t b;
  load_batch(pbatch, m, &b);
  size_t nlog;
  float* want = read_all(plog, &nlog);
  CHECK(nlog / 4 == (size_t)b.rows);
  float* out = calloc((size_t)b.rows, sizeof(float));
  dpn_predict_options opt = {1, 1, 0, {0}};
  CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_OK);
  for (int64_t i = 0; i < b.rows; ++i) CHECK(fabsf(out[i] - want[i]) <= 1e-5f + 1e-4f * fabsf(want[i]));
  /* defaults (NULL options): probabilities */
  CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, NULL) == DPN_OK);
  for (int64_t i = 0; i < b.rows; ++i) {
    float p = 1.0f / (1.0f + expf(-want[i]));
    CHECK(fabsf(out[i] - p) <= 1e-5f + 1e-4f * p);
  }
  /* from memory, copied */
  size_t nbytes;
  void* bytes = read_all(pa, &nbytes);
  dpn_model* mm = NULL;
  CHECK(dpn_model_load_memory(bytes, nbytes, DPN_LOAD_COPY, &mm) == DPN_OK);
  memset(bytes, 0, nbytes);
  float* out2 = calloc((size_t)b.rows, sizeof(float));
  CHECK(dpn_model_predict(mm, b.in, b.n, b.rows, out2, &opt) == DPN_OK);
  CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_OK);
  CHECK(memcmp(out, out2, (size_t)b.rows * 4) == 0);
  dpn_model* none = (dpn_model*)0x1;
  CHECK(dpn_model_load_memory(bytes, nbytes, DPN_LOAD_COPY, &none) == DPN_ERR_FORMAT);
  CHECK(none == NULL);
  CHECK(dpn_model_load_memory(bytes, nbytes, 7, &none) == DPN_ERR_INVALID_ARGUMENT);
  free(bytes);

  /* errors: status + message, nothing thrown into C */
  dpn_model* bad = (dpn_model*)0x1;
  CHECK(dpn_model_load(pmissing, &bad) == DPN_ERR_IO);
  CHECK(bad == NULL);
  CHECK(strstr(dpn_last_error(), "missing.bin") != NULL);
  CHECK(dpn_model_load(pbad, &bad) == DPN_ERR_FORMAT);
  CHECK(strlen(dpn_last_error()) > 0);
  CHECK(strcmp(dpn_status_name(DPN_ERR_FORMAT), "DPN_ERR_FORMAT") == 0);
  CHECK(dpn_model_load(NULL, &bad) == DPN_ERR_INVALID_ARGUMENT);
  CHECK(dpn_model_predict(m, b.in, b.n, b.rows, NULL, &opt) == DPN_ERR_INVALID_ARGUMENT);
  CHECK(dpn_model_predict(m, b.in, b.n - 1, b.rows, out, &opt) == DPN_ERR_INPUT);
  dpn_predict_options zero_threads = {0, 0, 0, {0}};
  CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &zero_threads) == DPN_ERR_INVALID_ARGUMENT);
  int64_t* item = (int64_t*)b.in[2].ids; /* 'item': policy "error", vocab 4 */
  int64_t keep = item[0];
  item[0] = 99;
  CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_ERR_INPUT);
  CHECK(strncmp(dpn_last_error(), "field 'item': ", 14) == 0);
  item[0] = keep;
  b.in[0].reserved[0] = out;
  CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_ERR_INVALID_ARGUMENT);
  b.in[0].reserved[0] = NULL;
  CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_OK);
  CHECK(strcmp(dpn_last_error(), "") == 0);

  /* caller sizes whose product wraps: 'tags' (multi_hot) with no ids and 2^62 columns x rows once
   * passed as 0 elements ("no ids given" skipped) and read NULL */
  {
    dpn_field_input saved = b.in[1];
    b.in[1].ids = NULL;
    b.in[1].cols = (int64_t)1 << 62;
    CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_ERR_INPUT);
    b.in[1].cols = INT64_MAX;
    CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_ERR_INPUT);
    b.in[1] = saved;
    saved = b.in[4]; /* 'ctx' (dense): values NULL, rows x 3 fine, but cols is the caller's */
    b.in[4].values = NULL;
    b.in[4].cols = 3;
    b.in[4].rows = b.rows;
    CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_ERR_INPUT);
    b.in[4] = saved;
  }

  /* a NaN score: DPN_ERR_INPUT naming the rows, or NaN with DPN_PREDICT_ALLOW_NAN */
  {
    float* price = (float*)b.in[3].values;
    float* ctx = (float*)b.in[4].values;
    float keep_p = price[0], keep_c[3] = {ctx[0], ctx[1], ctx[2]};
    price[0] = 1e38f;
    ctx[0] = ctx[1] = ctx[2] = -3e38f;
    CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_ERR_INPUT);
    CHECK(strstr(dpn_last_error(), "NaN") != NULL && strstr(dpn_last_error(), "row 0") != NULL);
    dpn_predict_options nan_ok = opt;
    nan_ok.flags = DPN_PREDICT_ALLOW_NAN;
    CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &nan_ok) == DPN_OK);
    CHECK(isnan(out[0]));
    nan_ok.flags = 2;
    CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &nan_ok) == DPN_ERR_INVALID_ARGUMENT);
    price[0] = keep_p;
    memcpy(ctx, keep_c, sizeof keep_c);
    CHECK(dpn_model_predict(m, b.in, b.n, b.rows, out, &opt) == DPN_OK);
  }

  /* a ranking request: 'user' (0) and 'ctx' (4, dense 3) shared by two users (rows 0 and 1 of the
   * batch), who own rows [0, 2) and [2, B); it must score as the batch repeating them (1e-6) */
  {
    const int64_t B = b.rows;
    int64_t* uid = malloc((size_t)B * 8);
    float* uctx = malloc((size_t)B * 12);
    const int64_t* ids0 = b.in[0].ids;
    const float* ctx0 = b.in[4].values;
    for (int64_t r = 0; r < B; ++r) {
      const int64_t u = r < 2 ? 0 : 1;
      uid[r] = ids0[u];
      memcpy(uctx + r * 3, ctx0 + u * 3, 12);
    }
    dpn_field_input bro[16];
    memcpy(bro, b.in, sizeof bro);
    bro[0].ids = uid;
    bro[4].values = uctx;
    float* want_r = calloc((size_t)B, sizeof(float));
    float* got_r = calloc((size_t)B, sizeof(float));
    CHECK(dpn_model_predict(m, bro, b.n, B, want_r, &opt) == DPN_OK);
    dpn_field_input cand[16];
    memcpy(cand, b.in, sizeof cand);
    memset(&cand[0], 0, sizeof cand[0]);
    memset(&cand[4], 0, sizeof cand[4]);
    dpn_shared_input sh[2];
    memset(sh, 0, sizeof sh);
    sh[0].field = 0;
    sh[0].input = b.in[0];
    sh[0].input.rows = 2;
    sh[1].field = 4;
    sh[1].input = b.in[4];
    sh[1].input.rows = 2;
    int64_t groups[3] = {0, 2, B};
    dpn_request rq;
    memset(&rq, 0, sizeof rq);
    rq.struct_size = sizeof rq;
    rq.inputs = cand;
    rq.num_inputs = b.n;
    rq.batch = B;
    rq.shared = sh;
    rq.num_shared = 2;
    rq.groups = groups;
    rq.users = 2;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_OK);
    for (int64_t r = 0; r < B; ++r)
      CHECK(fabsf(got_r[r] - want_r[r]) <= 1e-6f + 1e-6f * fabsf(want_r[r]));
    /* bad requests: a status and a message, never a crash */
    rq.struct_size = sizeof rq - 8;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INVALID_ARGUMENT);
    rq.struct_size = sizeof rq;
    CHECK(dpn_model_predict_request(m, NULL, got_r, &opt) == DPN_ERR_INVALID_ARGUMENT);
    CHECK(dpn_model_predict_request(m, &rq, NULL, &opt) == DPN_ERR_INVALID_ARGUMENT);
    groups[0] = 1;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INPUT);
    CHECK(strstr(dpn_last_error(), "start at 0") != NULL);
    groups[0] = 0;
    groups[1] = B + 1;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INPUT);
    groups[1] = 2;
    groups[2] = B - 1;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INPUT);
    CHECK(strstr(dpn_last_error(), "groups end at") != NULL);
    groups[2] = B;
    rq.users = 1;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INPUT);
    rq.users = 2;
    rq.num_shared = 99;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INPUT);
    rq.num_shared = 2;
    cand[0] = b.in[0];
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INPUT);
    CHECK(strstr(dpn_last_error(), "both") != NULL);
    memset(&cand[0], 0, sizeof cand[0]);
    sh[1].input.cols = INT64_MAX;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INPUT);
    sh[1].input.cols = 3;
    sh[1].input.reserved[1] = uid;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_ERR_INVALID_ARGUMENT);
    sh[1].input.reserved[1] = NULL;
    CHECK(dpn_model_predict_request(m, &rq, got_r, &opt) == DPN_OK);
    free(uid);
    free(uctx);
    free(want_r);
    free(got_r);
  }

  /* load options: read into memory; bad flags; a FIFO is refused at once, never waited on */
  {
    dpn_load_options lo = {DPN_LOAD_READ, 0, 0, {0, 0}};
    dpn_model* mr = NULL;
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_OK && mr != NULL);
    CHECK(dpn_model_predict(mr, b.in, b.n, b.rows, out2, &opt) == DPN_OK);
    CHECK(memcmp(out, out2, (size_t)b.rows * 4) == 0);
    dpn_model_free(mr);
    lo.flags = DPN_LOAD_READ | DPN_LOAD_BF16_GEMM; /* a float32 file: the same bits */
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_OK && mr != NULL);
    CHECK(dpn_model_predict(mr, b.in, b.n, b.rows, out2, &opt) == DPN_OK);
    CHECK(memcmp(out, out2, (size_t)b.rows * 4) == 0);
    dpn_model_free(mr);
    lo.flags = DPN_LOAD_NO_BF16_GEMM;
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_OK && mr != NULL);
    CHECK(dpn_model_predict(mr, b.in, b.n, b.rows, out2, &opt) == DPN_OK);
    CHECK(memcmp(out, out2, (size_t)b.rows * 4) == 0);
    dpn_model_free(mr);
    lo.flags = DPN_LOAD_BF16_GEMM | DPN_LOAD_NO_BF16_GEMM; /* contradictory */
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_ERR_INVALID_ARGUMENT);
    lo.flags = DPN_LOAD_INT8_GEMM | DPN_LOAD_BF16_GEMM; /* a float32 file: the same bits */
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_OK && mr != NULL);
    CHECK(dpn_model_predict(mr, b.in, b.n, b.rows, out2, &opt) == DPN_OK);
    CHECK(memcmp(out, out2, (size_t)b.rows * 4) == 0);
    dpn_model_free(mr);
    lo.flags = DPN_LOAD_NO_INT8_GEMM;
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_OK && mr != NULL);
    dpn_model_free(mr);
    lo.flags = DPN_LOAD_INT8_GEMM | DPN_LOAD_NO_INT8_GEMM; /* contradictory */
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_ERR_INVALID_ARGUMENT);
    lo.flags = 9;
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_ERR_INVALID_ARGUMENT);
    lo.flags = DPN_LOAD_MAP;
    lo.max_alloc_bytes = 16; /* less than the tiny model packs */
    CHECK(dpn_model_load_ex(pa, &lo, &mr) == DPN_ERR_FORMAT);
    CHECK(strstr(dpn_last_error(), "max_alloc_bytes") != NULL);
    CHECK(dpn_model_load_ex(pa, NULL, &mr) == DPN_OK);
    dpn_model_free(mr);
    char* pfifo = path_join(dir, "fifo.bin");
    remove(pfifo);
    if (mkfifo(pfifo, 0600) == 0) {
      CHECK(dpn_model_load(pfifo, &mr) == DPN_ERR_IO);
      CHECK(strstr(dpn_last_error(), "FIFO") != NULL);
      CHECK(dpn_model_load_ex(pfifo, &lo, &mr) == DPN_ERR_IO);
      dpn_holder* hf = NULL;
      CHECK(dpn_holder_create(m, &hf) == DPN_OK);
      CHECK(dpn_holder_load(hf, pfifo) == DPN_ERR_IO);
      CHECK(dpn_holder_load_ex(hf, pfifo, NULL) == DPN_ERR_IO);
      dpn_holder_free(hf);
      remove(pfifo);
    } else {
      CHECK(!"mkfifo failed");
    }
    free(pfifo);
  }

  /* shared handles: freeing one keeps the model alive for the other */
  dpn_model* m2 = NULL;
  CHECK(dpn_model_share(m, &m2) == DPN_OK);
  dpn_model_free(m);
  CHECK(dpn_model_predict(m2, b.in, b.n, b.rows, out2, &opt) == DPN_OK);
  CHECK(memcmp(out, out2, (size_t)b.rows * 4) == 0);

  /* holder: empty, set, load, failed load keeps the current model */
  dpn_holder* h = NULL;
  CHECK(dpn_holder_create(NULL, &h) == DPN_OK);
  dpn_model* cur = (dpn_model*)0x1;
  CHECK(dpn_holder_get(h, &cur) == DPN_OK && cur == NULL);
  CHECK(dpn_holder_set(h, m2) == DPN_OK);
  CHECK(dpn_holder_get(h, &cur) == DPN_OK && cur != NULL);
  CHECK(dpn_model_predict(cur, b.in, b.n, b.rows, out2, &opt) == DPN_OK);
  CHECK(memcmp(out, out2, (size_t)b.rows * 4) == 0);
  dpn_model_free(cur);
  CHECK(dpn_holder_load(h, pb) == DPN_OK);
  CHECK(dpn_holder_load(h, pbad) == DPN_ERR_FORMAT);
  CHECK(dpn_holder_get(h, &cur) == DPN_OK && cur != NULL);
  CHECK(dpn_model_predict(cur, b.in, b.n, b.rows, out2, &opt) == DPN_OK);
  CHECK(memcmp(out, out2, (size_t)b.rows * 4) != 0); /* now model b */
  dpn_model_free(cur);
  dpn_holder_free(h);
  dpn_model_free(m2);
  dpn_model_free(NULL);
  dpn_model_free(mm);

  free(out);
  free(out2);
  free(want);
  free_batch(&b);
  free(pa);
  free(pb);
  free(pbatch);
  free(plog);
  free(pbad);
  free(pmissing);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("c_api_test: all checks passed\n");
  return 0;
}
