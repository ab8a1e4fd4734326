#include "filters/chain.h"

namespace ward::filters {

size_t FilterChain::run_request(RequestContext& ctx, FilterState* states) const {
  size_t ran = 0;
  for (const auto& f : filters_) {
    states[ran] = FilterState{};
    ctx.state = &states[ran];
    ++ran;
    if (f->on_request(ctx) == FilterStatus::stop) {
      break;
    }
  }
  ctx.state = nullptr;
  return ran;
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
