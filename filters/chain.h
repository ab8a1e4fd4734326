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
  // one answered, ctx.waiting() whether it waits on a store (then call
  // resume_request with the store's answer).
  size_t run_request(RequestContext& ctx, FilterState* states) const;
  // Hands `result` to the waiting filter (the ran-th) and, unless it answers
  // or waits again, runs on from the next. Returns how many filters ran.
  size_t resume_request(RequestContext& ctx, FilterState* states, size_t ran,
                        const StoreResult& result) const;
  // Runs on_response in reverse over the first `ran` filters.
  void run_response(RequestContext& ctx, FilterState* states, size_t ran) const;
  void run_log(const RequestContext& ctx, size_t ran) const;

 private:
  // Runs on_request from filter `ran` on; stops at stop or wait.
  size_t continue_request(RequestContext& ctx, FilterState* states, size_t ran) const;

  std::vector<std::unique_ptr<Filter>> filters_;
};

}  // namespace ward::filters
