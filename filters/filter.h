#pragma once

// The filter interface (ARCHITECTURE.md "The filter interface"): what a filter
// sees of a request and how it is built from its YAML options.
//
// A filter sees a RequestContext, never a session or a socket. The codec
// (HTTP/1.1 today, HTTP/2 later) fills the context, runs the chains and
// applies what the filters decided. Filters are built once per config
// snapshot on the main thread and then shared by every worker, so a Filter
// is immutable after construction; anything that changes per request lives
// in the context, in the filter's FilterState slot, or in runtime state with
// its own documented thread safety (the rate limiter's bucket table).

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "proxy/config/config.h"
#include "proxy/config/reader.h"
#include "proxy/http/header_list.h"
#include "proxy/observe/metrics.h"
#include "proxy/store/redis.h"
#include "proxy/util/cidr.h"

namespace ward::filters {

// stop: the filter answered (ctx.reply). wait: the filter needs a shared
// store's answer first (ctx.store_call); the codec makes the call and hands
// the result to the same filter's on_store_reply, which decides instead.
enum class FilterStatus { next, stop, wait };

// A command on a shared store that a filter's request phase waits for
// (rate_limit with `store: redis://...`). The filter owns `address` for the
// life of its snapshot; the codec runs the call on its worker's client for
// that address, bounded by `timeout`.
struct StoreCall {
  const store::RedisAddress* address = nullptr;  // null: no call asked
  std::string command;                           // RESP (store::encode_command)
  int64_t timeout_ns = 0;
};

// What came back: a reply (a Redis error reply included), or why none did
// ("timeout", "unavailable: connection refused", "overloaded").
struct StoreResult {
  bool ok = false;
  const store::Reply* reply = nullptr;  // when ok
  std::string_view error;               // when not ok
};

// Per request, per filter scratch space, zeroed before the request phase:
// what a filter decided in on_request and needs again in on_response (the
// rate limiter's remaining tokens, CORS's "this was a preflight").
struct FilterState {
  int64_t a = 0;
  int64_t b = 0;
  int64_t c = 0;
};

// Transforms a response body as it streams (compress). The codec feeds the
// body in pieces of at most its buffer size and writes what `out` holds
// after each call, so memory stays bounded by the encoder's own state.
class BodyEncoder {
 public:
  enum class Mode {
    none,    // more input follows soon; output may be held back
    flush,   // the codec is about to wait for the upstream: emit all input so far
    finish,  // end of body: emit everything and the stream's trailer
  };
  virtual ~BodyEncoder() = default;
  // Appends the encoding of `in` to `out`; false on an internal error (the
  // codec then cuts the response short and closes the connection).
  virtual bool encode(std::string_view in, Mode mode, std::string& out) = 0;
};

// One request as the filters see it. The codec owns every referenced object
// and keeps them alive across both phases.
struct RequestContext {
  // --- The request (set by the codec before the request phase) ---
  std::string_view method;  // "GET", as received
  std::string_view path;    // target up to '?', as received
  std::string_view query;   // after '?', "" when none
  std::string_view host;    // the Host header as received, "" when absent
  // Edits made here in the request phase go upstream.
  http::HeaderList* request_headers = nullptr;
  // Decided once per request from trusted_proxies / PROXY protocol.
  util::IpAddress client_ip;
  std::string_view client_ip_text;
  bool tls = false;    // the downstream connection is TLS
  int64_t now_ns = 0;  // steady clock, read once per request; tests set it
  size_t worker = 0;   // the worker index: the metrics shard to update

  // --- The response (valid in the response phase only) ---
  int status = 0;
  // The response going downstream: the upstream's (hop-by-hop fields already
  // removed) or ward's own local reply. Filters add and edit fields here.
  http::HeaderList* response_headers = nullptr;
  // False for HEAD, 1xx, 204 and 304 responses: no body will follow.
  bool response_has_body = true;
  // The response was made by ward (a filter's reply, 404, 502 ...).
  bool local_reply = false;

  // --- Set by filters ---
  // A filter that answers calls reply() and returns FilterStatus::stop. The
  // body is {"error":"<error>","status":N}; an empty error names the status's
  // standard kind ("forbidden" for 403); status 204 (a CORS preflight) has no
  // body. Headers for the reply are added in on_response (local_reply is
  // true there).
  void reply(int status_code, std::string_view error = {}) {
    reply_status = status_code;
    reply_error = error;
  }
  bool replied() const { return reply_status != 0; }
  int reply_status = 0;
  std::string_view reply_error;  // must outlive the request (a literal)

  // The request id for the access log (request_id filter).
  std::string request_id;
  // Installed by compress in on_response: the codec streams the body through
  // it and frames the result itself (drops Content-Length, goes chunked).
  std::unique_ptr<BodyEncoder> response_encoder;

  // The running filter's scratch slot (set by FilterChain).
  FilterState* state = nullptr;

  // Set by a filter returning FilterStatus::wait.
  StoreCall store_call;
  bool waiting() const { return store_call.address != nullptr; }

  // Clears every per-request field; the codec calls it before each request
  // so a connection reuses one context (request_id keeps its capacity).
  void reset() {
    method = path = query = host = {};
    request_headers = nullptr;
    client_ip = {};
    client_ip_text = {};
    tls = false;
    now_ns = 0;
    worker = 0;
    status = 0;
    response_headers = nullptr;
    response_has_body = true;
    local_reply = false;
    reply_status = 0;
    reply_error = {};
    request_id.clear();
    response_encoder.reset();
    state = nullptr;
    store_call.address = nullptr;
    store_call.command.clear();
  }
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual FilterStatus on_request(RequestContext& ctx) = 0;
  // After on_request returned wait: the store's answer. Returns like
  // on_request (wait again to make another call).
  virtual FilterStatus on_store_reply(RequestContext& /*ctx*/, const StoreResult& /*result*/) {
    return FilterStatus::next;
  }
  virtual void on_response(RequestContext& /*ctx*/) {}
  virtual void on_log(const RequestContext& /*ctx*/) noexcept {}
};

// State that outlives one snapshot: a rate limiter's bucket table survives a
// reload, and filters with the same `share` name use the same table. Only the
// main thread calls get_or_create (while building a snapshot); the objects it
// returns document their own thread safety.
class RuntimeState {
 public:
  template <typename T, typename Make>
  std::shared_ptr<T> get_or_create(const std::string& key, Make&& make) {
    std::lock_guard lock(mutex_);  // building is rare; the lock only guards the map
    auto& slot = objects_[key];
    auto existing = std::static_pointer_cast<T>(slot);
    if (existing) {
      return existing;
    }
    std::shared_ptr<T> created = make();
    slot = created;
    return created;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<void>> objects_;
};

// What a filter factory gets: its options, where to report problems, and the
// process's runtime services.
struct BuildContext {
  const config::FilterSpec& spec;
  // Report option errors here, at the node's mark; they are printed as
  // file:line:col with every other config error.
  config::Reader& reader;
  observe::Registry& metrics;
  RuntimeState& runtime;
  // "global" for the global chain, else the route's name.
  std::string chain;
  // A label naming this instance in metrics: "<chain>.<filter>", with ".<n>"
  // appended for the n-th (n >= 2) filter of the same name in one chain.
  std::string label;

  // The options as a section checked against `known` keys (unknown keys are
  // reported with a suggestion). The path in messages is "<filter>".
  config::Section options(std::initializer_list<std::string_view> known) const {
    return reader.section(spec.options, spec.options.Mark(), spec.name, known);
  }
};

// Builds a filter from its options; returns nullptr after reporting errors.
using FilterFactory = std::function<std::unique_ptr<Filter>(BuildContext&)>;

}  // namespace ward::filters
