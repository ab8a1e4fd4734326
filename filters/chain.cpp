#include "filters/chain.h"

namespace ward::filters {

size_t FilterChain::run_request(RequestContext& ctx, FilterState* states) const {
  return continue_request(ctx, states, 0);
}

size_t FilterChain::continue_request(RequestContext& ctx, FilterState* states, size_t ran) const {
  while (ran < filters_.size()) {
    states[ran] = FilterState{};
    ctx.state = &states[ran];
    FilterStatus s = filters_[ran]->on_request(ctx);
    ++ran;
    if (s != FilterStatus::next) {
      break;
    }
  }
  ctx.state = nullptr;
  return ran;
}

size_t FilterChain::resume_request(RequestContext& ctx, FilterState* states, size_t ran,
                                   const StoreResult& result) const {
  ctx.store_call.address = nullptr;
  ctx.state = &states[ran - 1];
  FilterStatus s = filters_[ran - 1]->on_store_reply(ctx, result);
  ctx.state = nullptr;
  if (s != FilterStatus::next) {
    return ran;
  }
  return continue_request(ctx, states, ran);
}

void FilterChain::run_response(RequestContext& ctx, FilterState* states, size_t ran) const {
  for (size_t i = ran; i > 0; --i) {
    ctx.state = &states[i - 1];
    filters_[i - 1]->on_response(ctx);
  }
  ctx.state = nullptr;
}

void FilterChain::run_log(const RequestContext& ctx, size_t ran) const {
  for (size_t i = 0; i < ran; ++i) {
    filters_[i]->on_log(ctx);
  }
}

}  // namespace ward::filters
