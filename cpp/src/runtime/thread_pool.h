// The engine's worker threads: a process-wide pool that callers borrow per parallel loop.
//
// Not OpenMP: GNU libgomp's pool hangs in a child forked after the parent used it, and pre-fork
// servers (gunicorn, multiprocessing "fork") do exactly that. This pool is rebuilt in a forked
// child (pthread_atfork), idle workers sleep on a condition variable (no spinning), and the calling
// thread always works on its own loop, so any number of concurrent callers make progress even when
// every worker is busy with someone else's loop.
#pragma once

#include <cstdint>
#include <functional>

namespace dpn::runtime {

// Runs fn(i) for every i in [0, n), on at most `threads` threads: the caller plus up to threads - 1
// pool workers. The caller always runs index 0 (it starts before any worker can, so a split may
// give index 0 the larger share). Returns when all n calls have finished; rethrows the first
// exception any threw (the remaining indices are then skipped). threads <= 1 or n <= 1 runs
// everything on the caller.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn);

}  // namespace dpn::runtime
