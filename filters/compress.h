#pragma once

// The compress filter (CONFIG.md "Filters"): compresses responses the client
// accepts that the upstream sent uncompressed, streaming, with gzip or br.
//
// Options (defaults):
//   types       [text/*, application/json, application/javascript,
//                image/svg+xml]  media types, or type/* for a whole type;
//                matched case-insensitively against Content-Type without its
//                parameters
//   min_size    1KiB   a response whose Content-Length is below this is sent
//                      as is; a response of unknown length is compressed
//   algorithms  [br, gzip]  the codings offered; the order breaks a tie
//                      between equal client q-values
//   gzip_level  5      1 (fastest) - 9 (smallest)
//   br_quality  4      0 (fastest) - 9; 10 and 11 are too slow for live use
//
// Request phase: Accept-Encoding is read once (RFC 9110 12.5.3) and the
// choice kept in the filter's FilterState. Response phase: see
// CompressFilter::on_response in compress.cpp for when a response is
// compressed and what changes in its head; the body then streams through the
// BodyEncoder installed in ctx.response_encoder (filters/body_encoders.h:
// memory per response and output held back).
//
// Metrics, label filter = the instance's label ("api.compress"):
//   ward_compress_responses_total{filter,encoding}  responses of a
//       compressible type by the coding sent: br, gzip, or identity (not
//       compressed: the client, the size or a failed encoder start)
//   ward_compress_input_bytes_total{filter,encoding}   body bytes in
//   ward_compress_output_bytes_total{filter,encoding}  body bytes out

#include <memory>

#include "filters/filter.h"

namespace ward::filters {

// Returns nullptr after reporting option errors to ctx.reader.
std::unique_ptr<Filter> make_compress_filter(BuildContext& ctx);

}  // namespace ward::filters
