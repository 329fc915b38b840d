#include "graph/shared_plan.h"

#include <atomic>

namespace dpn::graph {

SharedPlan plan_shared(const Graph& g, const std::vector<char>& shared) {
  SharedPlan p;
  const size_t N = g.nodes.size();
  std::vector<char> user_value(g.widths.size(), 0);
  for (const Node& n : g.nodes) {
    // An input op is user-only when its field is shared; any other op when all of its inputs are
    // (an op with neither inputs nor a field is taken as candidate-dependent, the safe side).
    bool user = n.inputs.empty() ? n.op->field >= 0 && shared[size_t(n.op->field)] : true;
    for (int v : n.inputs) user = user && user_value[size_t(v)];
    user_value[size_t(n.output)] = user;
    p.user.push_back(user);
    p.candidate.push_back(!user);
    if (user) p.saved_per_row += n.op->width;
  }

  // Candidate nodes with a user-only input, or over a concat of both kinds of values: the op
  // may split (ops::SplitOp).
  std::vector<int> producer(g.widths.size(), -1);
  for (size_t k = 0; k < N; ++k) producer[size_t(g.nodes[k].output)] = int(k);
  p.split_of.assign(N, -1);
  for (size_t k = 0; k < N; ++k) {
    const Node& n = g.nodes[k];
    if (p.user[k] || n.inputs.empty()) continue;
    Split sp;
    sp.node = k;
    std::vector<char> user_cols, user_inputs;
    const int src = producer[size_t(n.inputs[0])];
    if (src >= 0 && g.nodes[size_t(src)].kind == "concat") {
      for (int v : g.nodes[size_t(src)].inputs) {
        const bool u = user_value[size_t(v)];
        (u ? sp.user_parts : sp.cand_parts).push_back(v);
        (u ? sp.mu : sp.mi) += g.widths[size_t(v)];
        user_cols.insert(user_cols.end(), size_t(g.widths[size_t(v)]), char(u));
      }
      if (sp.user_parts.empty() || sp.cand_parts.empty()) user_cols.clear();
    }
    bool any_user = !user_cols.empty();
    for (int v : n.inputs) {
      user_inputs.push_back(user_value[size_t(v)]);
      any_user = any_user || user_value[size_t(v)];
    }
    if (!any_user) continue;
    sp.op = n.op->split(user_cols, user_inputs);
    if (!sp.op) continue;
    if (sp.op->by_columns) {
      sp.reads = sp.cand_parts;
      p.saved_per_row += sp.mu * n.op->width;
    } else {
      for (int v : n.inputs)
        if (!user_value[size_t(v)]) sp.reads.push_back(v);
      p.saved_per_row += sp.op->part_width;
    }
    p.split_of[k] = int(p.splits.size());
    p.splits.push_back(std::move(sp));
  }

  // Step 2 runs the candidate nodes but a concat read only by splits (which read its parts);
  // a split reads only its `reads` there.
  std::vector<char> needed(g.widths.size(), 0);  // read by a node step 2 runs
  needed[size_t(g.output)] = 1;
  p.skip2.assign(N, 1);
  for (size_t k = N; k-- > 0;) {
    const Node& n = g.nodes[k];
    if (p.user[k] || !needed[size_t(n.output)]) continue;
    p.skip2[k] = 0;
    if (p.split_of[k] >= 0) {
      for (int v : p.splits[size_t(p.split_of[k])].reads) needed[size_t(v)] = 1;
      continue;
    }
    for (int v : n.inputs) needed[size_t(v)] = 1;
  }
  for (size_t v = 0; v < needed.size(); ++v)
    if (needed[v] && user_value[v]) {
      p.boundary.push_back(static_cast<int>(v));
      p.kept_per_user += g.widths[v];
    }
  for (const Split& s : p.splits) p.kept_per_user += s.op->part_width;
  return p;
}

std::shared_ptr<const SharedPlan> PlanCache::get(const Graph& g, const std::vector<char>& shared) const {
  const std::string key(shared.begin(), shared.end());
  auto find = [&](const std::shared_ptr<const std::vector<Entry>>& list) {
    if (list)
      for (const Entry& e : *list)
        if (e.first == key) return e.second;
    return std::shared_ptr<const SharedPlan>();
  };
  {
    auto list = std::atomic_load(&plans_);
    if (auto hit = find(list)) return hit;
    // Full: no plan (the caller takes the broadcast path). Planning per call would repack the
    // split layers' weights on every request.
    if (list && list->size() >= kMaxPlans) return nullptr;
  }
  auto made = std::make_shared<const SharedPlan>(plan_shared(g, shared));
  std::lock_guard<std::mutex> lock(add_);
  auto list = std::atomic_load(&plans_);
  if (auto hit = find(list)) return hit;  // another thread planned the same set meanwhile
  if (list && list->size() >= kMaxPlans) return nullptr;
  auto next = std::make_shared<std::vector<Entry>>(list ? *list : std::vector<Entry>());
  next->emplace_back(key, made);
  std::atomic_store(&plans_, std::shared_ptr<const std::vector<Entry>>(std::move(next)));
  return made;
}

}  // namespace dpn::graph
