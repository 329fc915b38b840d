#include "runtime/thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace dpn::runtime {

namespace {

// One parallel loop. Shared by the caller and the workers that joined it.
struct Loop {
  const std::function<void(int64_t)>* fn;
  int64_t n;
  std::atomic<int64_t> next{1};  // index 0 is the caller's
  std::atomic<int64_t> done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex mu;  // guards error, and done == n for the waiting caller
  std::condition_variable finished;

  void run_one(int64_t i) {
    if (failed.load(std::memory_order_relaxed)) return;
    try {
      (*fn)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
      failed.store(true);
    }
  }

  // Claims indices until none are left; returns after finishing its claims. The caller passes
  // first = true and runs index 0 itself before claiming (workers claim from 1), so a split can
  // count on index 0 being the calling thread's.
  void work(bool first = false) {
    int64_t i;
    int64_t mine = 0;
    if (first) {
      run_one(0);
      ++mine;
    }
    while ((i = next.fetch_add(1, std::memory_order_relaxed)) < n) {
      run_one(i);
      ++mine;
    }
    if (mine && done.fetch_add(mine) + mine == n) {
      std::lock_guard<std::mutex> lock(mu);
      finished.notify_all();
    }
  }
};

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(const std::shared_ptr<Loop>& loop, int helpers) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      try {
        while (int(workers_.size()) < helpers && int(workers_.size()) < kMaxWorkers)
          workers_.emplace_back([this] { serve(); });
      } catch (const std::system_error&) {
        // No more threads (pids limit, RLIMIT_NPROC): go on with the workers there are; the
        // caller works its own loop, so even none is enough.
      }
      helpers = std::min(helpers, int(workers_.size()));
      // One queue entry per helper wanted; a worker that finds the loop exhausted just drops it.
      // All or nothing: an entry left behind by a failed push would outlive the caller's fn.
      size_t pushed = 0;
      try {
        for (; pushed < size_t(helpers); ++pushed) queue_.push_back(loop);
      } catch (...) {
        while (pushed--) queue_.pop_back();
        throw;
      }
      pending_.fetch_add(helpers, std::memory_order_release);
    }
    if (helpers <= 0) return;
    if (helpers == 1)
      wake_.notify_one();
    else
      wake_.notify_all();
  }

 private:
  static constexpr int kMaxWorkers = 256;
  static constexpr std::chrono::microseconds kSpin{100};

  void serve() {
    for (;;) {
      // A predict call runs several parallel loops back to back (one per GEMM); polling for
      // kSpin after each keeps the next one from paying a futex wake-up (~10-20 µs). Then sleep:
      // an idle process burns no CPU.
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (pending_.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
      std::shared_ptr<Loop> loop;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        loop = std::move(queue_.front());
        queue_.pop_front();
        pending_.fetch_sub(1, std::memory_order_relaxed);
      }
      loop->work();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Loop>> queue_;
  std::vector<std::thread> workers_;
  std::atomic<int64_t> pending_{0};  // queue entries not yet taken (read without the lock)
  bool stop_ = false;
};

// The pool of this process. After fork() the child has none of the parent's threads (and maybe a
// mutex held by one of them), so the child abandons the old pool object (never touched again, never
// destroyed) and starts a fresh one on first use.
std::atomic<Pool*> g_pool{nullptr};
std::mutex g_pool_mu;
std::once_flag g_atfork_once;

void forget_pool_in_child() {
  g_pool.store(nullptr);
  new (&g_pool_mu) std::mutex();  // the parent's lock state means nothing here
}

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, forget_pool_in_child); });
  std::lock_guard<std::mutex> lock(g_pool_mu);
  p = g_pool.load();
  if (!p) {
    p = new Pool();  // lives for the process (workers may outlive static destruction order otherwise)
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}

constexpr std::chrono::microseconds kJoinSpin{50};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (threads <= 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto loop = std::make_shared<Loop>();
  loop->fn = &fn;
  loop->n = n;
  const int helpers = int(std::min<int64_t>(threads - 1, n - 1));
  pool().run(loop, helpers);
  loop->work(true);
  // The caller usually finishes its share first. Sleeping on the condition variable would add a
  // futex wake-up (10-50 µs on a VM) to every GEMM of a small-batch call, so poll briefly first:
  // parts are sized to take ~20 µs or more, so the wait is short or the worker is not running.
  const auto until = std::chrono::steady_clock::now() + kJoinSpin;
  while (loop->done.load(std::memory_order_acquire) != loop->n &&
         std::chrono::steady_clock::now() < until)
    cpu_relax();
  if (loop->done.load(std::memory_order_acquire) != loop->n) {
    std::unique_lock<std::mutex> lock(loop->mu);
    loop->finished.wait(lock, [&] { return loop->done.load() == loop->n; });
  }
  if (loop->error) std::rethrow_exception(loop->error);
}

}  // namespace dpn::runtime
