// Many threads on one Model, and hot reload through ModelHolder while 8 threads predict. Also run
// under ThreadSanitizer in CI (.ci/sanitize).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "dpn/dpn.h"
#include "test_data.h"

using dpn_test::BatchFile;
using dpn_test::data;
using dpn_test::Request;

namespace {

std::vector<float> run(const dpn::Model& m, const BatchFile& b, int threads = 1) {
  std::vector<float> out(size_t(b.rows));
  m.predict(b.inputs(m), b.rows, out.data(), true, threads);
  return out;
}

}  // namespace

TEST(Concurrency, ThreadsShareOneModel) {
  auto m = dpn::Model::load(data("golden.bin"));
  BatchFile b(data("golden.batch"));
  const auto want = run(*m, b);
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        try {
          // threads=1 is deterministic: the same bits as the single-threaded reference. threads=2
          // borrows pool workers shared with the other callers.
          const auto got = run(*m, b, (t % 2) ? 2 : 1);
          for (size_t r = 0; r < got.size(); ++r)
            if (std::fabs(got[r] - want[r]) > 1e-6f + 1e-5f * std::fabs(want[r])) ++wrong;
        } catch (...) {
          ++failed;
        }
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

// Hot reload: 8 request threads take the current model per request while the main thread swaps
// between two models (by set() and by load() from disk, plus a failing load of a bad file). No
// request may fail, and every request's whole output must be one model's output (never a mix).
TEST(Concurrency, HotReloadWhileEightThreadsPredict) {
  BatchFile b(data("tiny.batch"));
  auto a = dpn::Model::load(data("tiny_a.bin"));
  auto bm = dpn::Model::load(data("tiny_b.bin"));
  const auto out_a = run(*a, b), out_b = run(*bm, b);
  ASSERT_NE(out_a, out_b);
  dpn::ModelHolder holder(a);
  std::atomic<bool> stop{false};
  std::atomic<long> n_a{0}, n_b{0}, mixed{0}, failed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      while (!stop.load()) {
        try {
          std::shared_ptr<const dpn::Model> m = holder.get();
          const auto got = run(*m, b);
          if (got == out_a)
            ++n_a;
          else if (got == out_b)
            ++n_b;
          else
            ++mixed;
        } catch (...) {
          ++failed;
        }
      }
    });
  const auto t0 = std::chrono::steady_clock::now();
  int swaps = 0;
  while (swaps < 400 || n_a.load() < 50 || n_b.load() < 50) {
    if (swaps % 50 == 49) {
      holder.load(data(swaps % 100 == 49 ? "tiny_b.bin" : "tiny_a.bin"));
      EXPECT_THROW(holder.load(data("format/bad_magic.error.bin")), dpn::FormatError);
    } else {
      auto prev = holder.set(swaps % 2 ? a : bm);
      EXPECT_TRUE(prev);
    }
    ++swaps;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(20)) break;
  }
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(mixed.load(), 0);
  EXPECT_GE(n_a.load(), 50);
  EXPECT_GE(n_b.load(), 50);
  EXPECT_GE(swaps, 400);
}

// Ranking requests from 8 threads on one model, each thread with its own sets of shared fields (the
// plans are made and cached while other threads use them), every answer its broadcast batch's.
TEST(Concurrency, RequestsWithDifferentSharedSets) {
  auto m = dpn::Model::load(data("golden_seq.bin"));
  BatchFile b(data("golden_seq.batch"));
  const unsigned n = unsigned(m->num_fields());
  std::vector<Request> reqs;
  std::vector<std::vector<float>> want;
  for (unsigned mask = 1; mask < (1u << n); mask += 3) {
    reqs.emplace_back(*m, b, mask, std::vector<int64_t>{300, 0, 200});
    want.emplace_back(500);
    m->predict(reqs.back().broadcast, 500, want.back().data(), dpn::PredictOptions{1, true});
  }
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      std::vector<float> got(500);
      for (size_t k = size_t(t); k < reqs.size(); k += 8) {
        try {
          m->predict(reqs[k].cand, 500, reqs[k].shared, got.data(),
                     dpn::PredictOptions{1 + t % 2, true});
          for (size_t r = 0; r < got.size(); ++r)
            if (std::fabs(got[r] - want[k][r]) > 1e-5f + 1e-4f * std::fabs(want[k][r])) ++wrong;
        } catch (...) {
          ++failed;
        }
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}
