// dpn::ModelHolder: the hot-reload slot. std::atomic_load/atomic_store on a shared_ptr make the swap
// and the read one step each; a reader that got the old model keeps it alive until it lets go.
#include <atomic>

#include "dpn/dpn.h"

namespace dpn {

ModelHolder::ModelHolder(std::shared_ptr<const Model> model) : model_(std::move(model)) {}

std::shared_ptr<const Model> ModelHolder::get() const { return std::atomic_load(&model_); }

std::shared_ptr<const Model> ModelHolder::set(std::shared_ptr<const Model> model) {
  return std::atomic_exchange(&model_, std::move(model));
}

std::shared_ptr<const Model> ModelHolder::load(const std::string& path) {
  return load(path, LoadOptions{});
}

std::shared_ptr<const Model> ModelHolder::load(const std::string& path, const LoadOptions& options) {
  // Load (map, validate, pack weights) before touching the slot: a bad file throws here and the
  // current model stays; requests never wait for the load.
  std::shared_ptr<const Model> fresh = Model::load(path, options);
  return set(std::move(fresh));
}

}  // namespace dpn
