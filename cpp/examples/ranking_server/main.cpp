// ranking_server: what a ranking service does with the engine, in one file.
//
//   ranking_server MODEL REQUESTS SCORES_OUT [--workers N] [--rows R] [--threads T] [--reload-ms MS]
//                  [--repeat K]
//
// Loads MODEL into a dpn::ModelHolder, replays a request log (REQUESTS: a batch file, format below)
// as requests of R candidate rows each, scored by N worker threads that share the model, and writes
// every row's click probability to SCORES_OUT (raw float32, in request-log order). With --reload-ms,
// a reload thread loads MODEL again every MS milliseconds and swaps it in while requests run (the
// hot-reload pattern of docs/cpp.md). --repeat K replays the log K times (same scores each time).
// Prints the request latency percentiles.
//
// Request log format (little-endian): "DPNB", u32 field count; per field: u32 name length, name,
// u32 type (0 = int64 ids, 1 = float32 values), i64 rows, i64 cols, rows*cols values.
#include <dpn/dpn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// One column of the request log, kept as the server's own (caller-owned) arrays.
struct Column {
  std::string name;
  bool ids = true;
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> i64;
  std::vector<float> f32;
};

std::vector<Column> read_log(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  const std::vector<char> b((std::istreambuf_iterator<char>(f)), {});
  size_t pos = 0;
  auto take = [&](void* dst, size_t n) {
    if (n > b.size() - pos) throw std::runtime_error("truncated request log " + path);
    std::memcpy(dst, b.data() + pos, n);
    pos += n;
  };
  char magic[4];
  take(magic, 4);
  if (std::memcmp(magic, "DPNB", 4) != 0) throw std::runtime_error("not a request log: " + path);
  uint32_t n = 0;
  take(&n, 4);
  std::vector<Column> cols(n);
  for (auto& c : cols) {
    uint32_t len = 0, type = 0;
    take(&len, 4);
    c.name.resize(len);
    take(&c.name[0], len);
    take(&type, 4);
    take(&c.rows, 8);
    take(&c.cols, 8);
    c.ids = type == 0;
    if (c.ids) {
      c.i64.resize(size_t(c.rows * c.cols));
      take(c.i64.data(), c.i64.size() * 8);
    } else {
      c.f32.resize(size_t(c.rows * c.cols));
      take(c.f32.data(), c.f32.size() * 4);
    }
  }
  return cols;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s MODEL REQUESTS SCORES_OUT [--workers N] [--rows R] [--threads T] "
                 "[--reload-ms MS] [--repeat K]\n",
                 argv[0]);
    return 2;
  }
  const std::string model_path = argv[1], log_path = argv[2], out_path = argv[3];
  int workers = 8, threads = 1, reload_ms = 0, repeat = 1;
  int64_t rows_per_request = 16;
  for (int i = 4; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::atol(argv[i + 1]);
    if (k == "--workers")
      workers = int(v);
    else if (k == "--rows")
      rows_per_request = v;
    else if (k == "--threads")
      threads = int(v);
    else if (k == "--reload-ms")
      reload_ms = int(v);
    else if (k == "--repeat")
      repeat = int(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }

  try {
    std::printf("dpn_infer %s\n", dpn::version());
    dpn::ModelHolder holder(dpn::Model::load(model_path));
    {
      auto m = holder.get();
      std::printf("model: opset %lld, %lld fields:", (long long)m->opset(), (long long)m->num_fields());
      for (const auto& f : m->fields()) std::printf(" %s", f.name.c_str());
      std::printf("\n");
    }
    const std::vector<Column> log = read_log(log_path);
    const int64_t total = log.empty() ? 0 : log[0].rows;
    const int64_t per_pass = (total + rows_per_request - 1) / rows_per_request;
    const int64_t n_requests = per_pass * repeat;
    std::vector<float> scores(static_cast<size_t>(total), -1.0f);
    std::vector<double> latency_us(static_cast<size_t>(n_requests));

    // Reload thread: validates a fresh copy off the request path, then swaps it in.
    std::atomic<bool> done{false};
    std::atomic<int> reloads{0};
    std::thread reloader;
    if (reload_ms > 0)
      reloader = std::thread([&] {
        while (!done.load()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(reload_ms));
          try {
            // Keep the previous model here until requests drop it, so its unmapping happens on
            // this thread, not on a request thread.
            std::shared_ptr<const dpn::Model> old = holder.load(model_path);
            while (old.use_count() > 1 && !done.load())
              std::this_thread::sleep_for(std::chrono::milliseconds(1));
            ++reloads;
          } catch (const dpn::Error& e) {
            std::fprintf(stderr, "reload failed, keeping the current model: %s\n", e.what());
          }
        }
      });

    std::atomic<int64_t> next{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (int w = 0; w < workers; ++w)
      pool.emplace_back([&] {
        for (int64_t r; (r = next.fetch_add(1)) < n_requests;) {
          const auto t0 = std::chrono::steady_clock::now();
          const int64_t row0 = (r % per_pass) * rows_per_request;
          const int64_t rows = std::min(rows_per_request, total - row0);
          try {
            std::shared_ptr<const dpn::Model> model = holder.get();  // one model for the whole request
            dpn::Batch batch(*model, rows);  // views into the log's arrays: nothing is copied
            for (const Column& c : log) {
              if (c.ids)
                batch.set_ids(c.name, c.i64.data() + row0 * c.cols, c.cols);
              else
                batch.set_values(c.name, c.f32.data() + row0 * c.cols, c.cols);
            }
            dpn::PredictOptions opt;
            opt.threads = threads;
            model->predict(batch, scores.data() + row0, opt);
          } catch (const dpn::InputError& e) {  // a bad request: answer it with an error, go on
            std::fprintf(stderr, "request %lld refused: %s\n", (long long)r, e.what());
            ++failures;
          }
          latency_us[size_t(r)] =
              std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
        }
      });
    for (auto& t : pool) t.join();
    done = true;
    if (reloader.joinable()) reloader.join();

    std::vector<double> lat = latency_us;
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) { return lat.empty() ? 0.0 : lat[size_t(p * double(lat.size() - 1))]; };
    std::printf(
        "%lld requests, %lld rows, %d workers, %d failed, %d reloads; latency p50 %.1f us, "
        "p99 %.1f us\n",
        (long long)n_requests, (long long)total, workers, failures.load(), reloads.load(), pct(0.5),
        pct(0.99));
    std::ofstream out(out_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(scores.data()), std::streamsize(scores.size() * 4));
    return failures.load() ? 1 : 0;
  } catch (const dpn::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
