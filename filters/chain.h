#pragma once

// An ordered list of filters and the two-phase walk over it (CONFIG.md
// "Filters"): the request phase runs in order until a filter answers; the
// response phase runs in reverse over every filter whose request phase ran,
// the one that answered included; on_log runs over the same filters.

#include <memory>
#include <vector>

#include "filters/filter.h"

namespace ward::filters {

class FilterChain {
 public:
  void add(std::unique_ptr<Filter> filter) { filters_.push_back(std::move(filter)); }
  size_t size() const { return filters_.size(); }
  bool empty() const { return filters_.empty(); }

  // Runs on_request from the first filter; `states` has size() slots, zeroed
  // here. Returns how many filters ran; ctx.replied() tells whether the last
  // one answered.
  size_t run_request(RequestContext& ctx, FilterState* states) const;
  // Runs on_response in reverse over the first `ran` filters.
  void run_response(RequestContext& ctx, FilterState* states, size_t ran) const;
  void run_log(const RequestContext& ctx, size_t ran) const;

 private:
  std::vector<std::unique_ptr<Filter>> filters_;
};

}  // namespace ward::filters
