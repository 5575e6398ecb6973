"""Named constants, each with the vendor fact or measurement behind it (see growingio-api.md)."""

from datetime import timedelta, timezone

# export_date is Beijing time (API §2.2); China has no daylight saving, so a fixed offset is exact.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")

# The 10 data types of raw export 2.0 (API §2.2, "new" docs; vstr is missing from the old page).
ALL_DATA_TYPES: tuple[str, ...] = (
    "visit",
    "page",
    "action",
    "action_tag",
    "custom_event",
    "ads_track_activation",
    "ads_track_click",
    "pvar",
    "evar",
    "vstr",
)
EXPORT_TYPES: tuple[str, ...] = ("hour", "day")

# Readiness (API §2.6): hourly data ~30 min after the hour (old docs) / 40 min (new docs);
# the hours 23:00-02:00 take 60 min; daily data is 2-4 h late.
DEFAULT_HOUR_LAG_MINUTES = 30
DEFAULT_NIGHT_HOUR_LAG_MINUTES = 60
NIGHT_HOURS: frozenset[int] = frozenset({23, 0, 1})
DEFAULT_DAY_LAG_MINUTES = 240
# The API keeps the most recent 15 days (API §2.6).
DEFAULT_RETENTION_DAYS = 15

# At most 2 raw-export API calls a second (API §2.9).
DEFAULT_RATE_LIMIT_PER_SECOND = 2
# Download links live 5 minutes by default, at most 7 days (API §2.2).
DEFAULT_LINK_EXPIRE_MINUTES = 5
MAX_LINK_EXPIRE_MINUTES = 7 * 24 * 60

# The vendor advises retrying failures about 5 minutes apart (API §2.4, §7.2.3).
DEFAULT_MAX_BACKOFF_SECONDS = 300.0
DEFAULT_INITIAL_BACKOFF_SECONDS = 5.0
# How long a due partition may still answer RUNNING / NOT_EXISTS before it is reported failed.
DEFAULT_NOT_READY_GRACE_MINUTES = 240
# A raw export answering RUNNING is being built (API §2.4, §2.6: early-morning hours take 3-4 h):
# re-poll after 15-30 s at first, backing off to this cap; a backfill waits this long for it.
RUNNING_POLL_FIRST_SECONDS = 15.0
DEFAULT_RUNNING_POLL_MAX_SECONDS = 300.0
DEFAULT_BACKFILL_RUNNING_WAIT_MINUTES = 180.0
# Statistics and CDP jobs take seconds: re-poll after ~1 s, backing off to 10 s (exports-spec §0).
JOB_POLL_FIRST_SECONDS = 1.0
JOB_POLL_MAX_SECONDS = 10.0
# Transient failures (5xx, 429, timeouts, broken bodies) of one partition before it is reported.
DEFAULT_MAX_ATTEMPTS = 8
# Export jobs that end "failed" (statistics) or in stage ERROR (CDP) before a partition is
# reported failed for this run: each is a new job on the vendor's side (exports-spec §0).
DEFAULT_MAX_JOB_ATTEMPTS = 4
# Statistics and CDP snapshots: the vendor says the previous day is complete after 06:00
# (exports-spec §2).
DEFAULT_REPORT_LAG_MINUTES = 360

# Parts are ~64 MB gzip files (API §2.5). Reading and writing in ~1 MiB blocks keeps the per-chunk
# overhead (an executor hop, a hash update, an inflate call) negligible; 64 KiB writes through
# aiofiles cost about 3x the throughput on a 2-core machine.
IO_BLOCK_BYTES = 1024 * 1024
# aiohttp's per-connection read buffer (it pauses the socket at twice this). Its own default,
# 256 KiB: the chunks it hands over are the socket reads (at most 256 KiB each) whatever this is,
# so a bigger buffer only holds more of a download that storage cannot keep up with (measured:
# 1 MiB cost 12 MiB more peak RSS with 8 downloads into S3 and was no faster to local disk).
READ_BUFFER_BYTES = 256 * 1024

# Start the disk writeback of a part every so many bytes instead of leaving it all to the fsync at
# the end: the disk then works while the network does, not after it.
WRITEBACK_BYTES = 8 * 1024 * 1024

# Connecting to an API host: refused, DNS and TLS failures are immediate; a silent host is given
# this long before the attempt counts as "cannot reach" (a backfill then stops within seconds).
CONNECT_TIMEOUT_SECONDS = 5.0

DEFAULT_DOWNLOAD_CONCURRENCY = 8
# A download that receives no byte for this long is broken off and resumed with Range.
DEFAULT_READ_TIMEOUT_SECONDS = 60.0
DEFAULT_PARTITION_CONCURRENCY = 4

# A part's name: the 0-based position of its link in downloadLinks[type] (API §7.2.1).
PART_NAME_FORMAT = "part-{index:05d}.csv.gz"
SUCCESS_NAME = "_SUCCESS"
# Hidden temporary prefix: readers (Spark, Hive, DuckDB) skip names starting with "." or "_",
# and the ".partial" suffix cannot match "*.csv.gz".
TEMP_PREFIX = "."
TEMP_SUFFIX = ".partial"
# Beside a ".partial": the ETag / Last-Modified and size of the bytes in it (resume with If-Range).
VALIDATOR_SUFFIX = ".partial.validator"
