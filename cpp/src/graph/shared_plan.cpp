#include "graph/shared_plan.h"

#include <atomic>

namespace dpn::graph {

SharedPlan plan_shared(const Graph& g, const std::vector<char>& shared) {
  SharedPlan p;
  std::vector<char> user_value(g.widths.size(), 0);
  for (const Node& n : g.nodes) {
    // An input op is user-only when its field is shared; any other op when all of its inputs are
    // (an op with neither inputs nor a field is taken as candidate-dependent, the safe side).
    bool user = n.inputs.empty() ? n.op->field >= 0 && shared[size_t(n.op->field)] : true;
    for (int v : n.inputs) user = user && user_value[size_t(v)];
    user_value[size_t(n.output)] = user;
    p.user.push_back(user);
    p.candidate.push_back(!user);
    if (user) p.user_floats += n.op->width;
  }
  std::vector<char> is_boundary(g.widths.size(), 0);
  for (const Node& n : g.nodes)
    if (!user_value[size_t(n.output)])
      for (int v : n.inputs)
        if (user_value[size_t(v)]) is_boundary[size_t(v)] = 1;
  if (user_value[size_t(g.output)]) is_boundary[size_t(g.output)] = 1;
  for (size_t v = 0; v < is_boundary.size(); ++v)
    if (is_boundary[v]) p.boundary.push_back(static_cast<int>(v));
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
  if (auto hit = find(std::atomic_load(&plans_))) return hit;
  auto made = std::make_shared<const SharedPlan>(plan_shared(g, shared));
  std::lock_guard<std::mutex> lock(add_);
  auto list = std::atomic_load(&plans_);
  if (auto hit = find(list)) return hit;  // another thread planned the same set meanwhile
  if (list && list->size() >= kMaxPlans) return made;
  auto next = std::make_shared<std::vector<Entry>>(list ? *list : std::vector<Entry>());
  next->emplace_back(key, made);
  std::atomic_store(&plans_, std::shared_ptr<const std::vector<Entry>>(std::move(next)));
  return made;
}

}  // namespace dpn::graph
