#include "filters/ip_access.h"

#include <utility>

#include "filters/headers.h"

namespace ward::filters {

namespace {

// `<key>: [CIDR, ...]` into `out`; false after reporting a bad item.
bool read_cidrs(config::Reader& reader, const config::Section& s, std::string_view key,
                util::CidrSet& out) {
  const YAML::Node* node = s.get(key);
  if (node == nullptr) {
    return true;
  }
  const std::string path = s.child(key);
  auto items = reader.list_of(*node, s.value_mark(key), path);
  if (!items) {
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < items->size(); ++i) {
    const YAML::Node& item = (*items)[i];
    const std::string item_path = path + "[" + std::to_string(i) + "]";
    auto text = reader.string_of(item, item.Mark(), item_path);
    if (!text) {
      ok = false;
      continue;
    }
    auto cidr = util::Cidr::parse(*text);
    if (!cidr) {
      reader.error(item.Mark(), item_path +
                                    ": expected a CIDR such as 10.0.0.0/8 or ::1/128, got " +
                                    config::Reader::quote(*text));
      ok = false;
      continue;
    }
    out.add(*cidr);
  }
  return ok;
}

class IpAccessFilter : public Filter {
 public:
  IpAccessFilter(util::CidrSet allow, util::CidrSet deny)
      : allow_(std::move(allow)), deny_(std::move(deny)) {}

  FilterStatus on_request(RequestContext& ctx) override {
    // Deny wins, so a deny list can carve holes out of a broad allow list
    // (allow 10.0.0.0/8, deny 10.66.0.0/16). An IPv4 client is held as
    // ::ffff:a.b.c.d, so IPv4 CIDRs match it and ::/0 covers every client.
    const bool denied =
        deny_.contains(ctx.client_ip) || (!allow_.empty() && !allow_.contains(ctx.client_ip));
    if (denied) {
      ctx.reply(403);
      return FilterStatus::stop;
    }
    return FilterStatus::next;
  }

 private:
  const util::CidrSet allow_;
  const util::CidrSet deny_;
};

}  // namespace

std::unique_ptr<Filter> make_ip_access_filter(BuildContext& ctx) {
  bool ok = true;
  config::Section s = checked_options(ctx, {"allow", "deny"}, ok);
  util::CidrSet allow;
  util::CidrSet deny;
  ok = read_cidrs(ctx.reader, s, "allow", allow) && ok;
  ok = read_cidrs(ctx.reader, s, "deny", deny) && ok;
  if (ok && allow.empty() && deny.empty()) {
    // Without either list the filter would let everyone through: surely
    // not what was meant.
    ctx.reader.error(options_mark(ctx), "ip_access: needs a non-empty allow or deny list");
    ok = false;
  }
  if (!ok) {
    return nullptr;
  }
  return std::make_unique<IpAccessFilter>(std::move(allow), std::move(deny));
}

}  // namespace ward::filters
