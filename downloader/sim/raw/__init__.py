"""The bundled simulator of GrowingIO's raw data export API (`/v2/insights`) and its links.

Tests, the demo and benchmarks run it on loopback (`start_simulator`, or `gio-downloader
simulate`, which listens on http://127.0.0.1:8080 by default).

Modules, one concept each:
- `schema`: data types, their columns, export types, partitions (§2.2, §2.11).
- `csvgen`: deterministic gzip CSV part content (RFC 4180 quoting) and part sizing.
- `partstore`: parts cached on disk; the current version of each re-exported partition.
- `faults`: `SimConfig` and `Faults` (the knobs below).
- `stats`: one record per API call and per download.
- `links`: opaque, signed, expiring download links (lifetimes in real seconds).
- `api`: answer bodies, parameter checks, due times, bent answers.
- `download`: serving a part: ranges, ETag/Last-Modified/If-Range, bent bodies.
- `control`: the `/_sim/...` endpoints.
- `raw`: the aiohttp app, its handlers, and the entry points.

Endpoints:
- `GET /v2/insights/{export_type}/{data_type}/{ai}/{export_date}.json?expire=N` (one type)
- `GET /v2/insights/{export_type}/{ai}/{export_date}.json?expire=N` (all types)
- `GET /download/{opaque}?Expires=..&Signature=..`: a part. Range supported; a strong `ETag`
  (the part's sha256, quoted) and a `Last-Modified`; `If-Range` per RFC 9110 §13.1.5 (a
  matching strong ETag or exact date: 206; anything else: 200 with the whole current part).
- `GET /_sim/stats`: every API call and download seen.
- `POST /_sim/faults`: set knobs, answers all of them; unknown names or bad values: 400.
- `POST /_sim/clock` `{"now": "2024-06-10T12:00:00+08:00" | null}`: freeze or free the
  export clock (due times, retention, requestTime; never link lifetimes).
- `GET /_sim/parts/{ai}/{export_type}/{data_type}/{export_date}`: the current parts
  (index, size, sha256).
- `POST /_sim/reexport` `{"ai", "export_type", "data_type", "label", "parts"?}`: the
  partition's content becomes a new version (new bytes; `parts` sets a new part count). Links
  already handed out name the same objects and serve the NEW bytes, as the vendor re-exports
  behind the same names; a resume without If-Range then splices two versions. Answers the new
  parts.

Link lifetimes are real seconds on a monotonic clock (`SimConfig.monotonic`): `expire`
minutes × 60, or `SimConfig.link_ttl_seconds` when set, however fast the export clock runs.

Fault knobs (fields of `Faults`). A counter means "the next N matching requests" and counts
down; a flag or value stays until changed. Examples assume `S=http://127.0.0.1:8080`:

    curl -X POST $S/_sim/faults -H 'Content-Type: application/json' -d '{"drop": 2}'

API answers (`/v2/insights`; auth is checked first, a 401 consumes nothing):
- `api_500` (counter): HTTP 500. `-d '{"api_500": 1}'`
- `api_429` (counter): HTTP 429 with `Retry-After: retry_after_seconds` (float, default 1).
  `-d '{"api_429": 3, "retry_after_seconds": 2.5}'`
- `enforce_rate_limit` (flag): more than `SimConfig.rate_limit_per_second` calls in any
  1-second window answer 429. `-d '{"enforce_rate_limit": true}'`
- `api_error` (counter): a due, finished partition answers `status: ERROR` with the vendor's
  failure text. `-d '{"api_error": 1}'`
- `api_garbage` (counter, any 200 answer, computed and counted as usual then mangled) of kind
  `api_garbage_kind`: `"html"` an HTML error page with status 200, `"truncated"` the first half
  of the JSON text, `"no_status"` the JSON object without `status`.
  `-d '{"api_garbage": 2, "api_garbage_kind": "truncated"}'`
- `finished_without_links` (counter, FINISHED answers): the `downloadLinks` key is left out.
  `-d '{"finished_without_links": 1}'`
- `links_wrong_shape` (counter, FINISHED answers) of kind `links_wrong_shape_kind`:
  `"string"` the first link as a bare string, `"object"` an object of comma-joined strings
  instead of lists. `-d '{"links_wrong_shape": 1, "links_wrong_shape_kind": "object"}'`
- `type_missing` (counter, all-types FINISHED answers): the first requested type (`visit`)
  is missing from `downloadLinks`. `-d '{"type_missing": 1}'`

Downloads (`/download/...`, after the signature and expiry checks):
- `download_500` (counter): an S3-style 500 XML error. `-d '{"download_500": 1}'`
- `drop` (counter): the connection ends after `drop_after_bytes` bytes (default 65536; always
  short of the body). `-d '{"drop": 1, "drop_after_bytes": 4096}'`
- `corrupt` (counter): a run of bytes in the middle is inverted; the length stays right.
  `-d '{"corrupt": 1}'`
- `stall` (counter): headers and the first `stall_after_bytes` (default 1024) bytes go out,
  then nothing for `stall_seconds` (default 30) with the connection open, then the rest.
  `-d '{"stall": 1, "stall_after_bytes": 1000, "stall_seconds": 120}'`
- `huge_header` (counter): the answer carries an `X-Amz-Meta-Padding` header of 16 KiB (most
  clients stop at 8,190 bytes). `-d '{"huge_header": 1}'`
- `redirect_loop` (counter): the download URL answers 302 to itself, for good (every later
  request of that URL too); fresh links are not caught. `-d '{"redirect_loop": 1}'`
- `gzip_transfer` (flag): when the request's Accept-Encoding allows gzip, the body is
  gzip-compressed again on the fly with `Content-Encoding: gzip`, chunked, a weak ETag (a
  compressing proxy). `-d '{"gzip_transfer": true}'`
- `throttle_bytes_per_second` (value or null): every download is sent at most this fast.
  `-d '{"throttle_bytes_per_second": 1000000}'`

Drop, corrupt and stall exclude each other (in that order); a huge header, gzip transfer and
throttling combine with any of them.
"""
