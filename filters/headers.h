#pragma once

// The `headers` filter (CONFIG.md "Filters"): plain edits of request fields
// going upstream and response fields going downstream.
//
// This file also holds the header-field rules every filter that writes
// headers checks its options against at build time, so a bad config is
// refused at load instead of producing a broken or smuggled header at run time.

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "filters/filter.h"

namespace ward::filters {

std::unique_ptr<Filter> make_headers_filter(BuildContext& ctx);

// ctx.options(known), with `ok` set false when reading them reported a
// problem (an unknown or repeated key, options that are not a map): the
// Section drops such keys after reporting them, and a factory must then
// return nullptr. Belongs in BuildContext; here until filter.h grows it.
config::Section checked_options(BuildContext& ctx, std::initializer_list<std::string_view> known,
                                bool& ok);

// Where to report a problem with the options as a whole (a missing key): the
// options map, or the filter's name when the map was written empty
// (`- api_key:`), for which the loader makes a map without a position.
YAML::Mark options_mark(const BuildContext& ctx);

// RFC 9110 5.6.2: a field name is a non-empty token.
bool is_header_name(std::string_view name);

// Fields that frame the message or describe the connection (RFC 9112 6,
// RFC 9110 7.6.1): ward writes them itself for each hop, so a filter that set
// or removed one could desynchronise framing (request smuggling) or break
// keep-alive. Host is not one of them.
bool is_connection_field(std::string_view name);

// Why `value` cannot be sent as a field value (RFC 9110 5.5: no control
// characters except HTAB, no leading or trailing whitespace), or nullopt
// when it can.
std::optional<std::string> header_value_problem(std::string_view value);

// Checks a field name that a filter will write or remove: a token, not a
// connection field. Reports at `mark` as "<path>: ..." and returns false on
// error.
bool check_header_name(config::Reader& reader, std::string_view name, const YAML::Mark& mark,
                       const std::string& path);

// The same for a name given as a YAML value (it must be a string).
std::optional<std::string> read_header_name(config::Reader& reader, const YAML::Node& node,
                                            const YAML::Mark& mark, const std::string& path);

// Reads a field value a filter will write (a scalar; YAML numbers and
// booleans count as their text). Reports like read_header_name.
std::optional<std::string> read_header_value(config::Reader& reader, const YAML::Node& node,
                                             const YAML::Mark& mark, const std::string& path);

}  // namespace ward::filters
