"""The YAML configuration (downloader/config/): parsing, ${VAR} expansion, validation.

Every mistake must be a ConfigError whose str() is one line naming the file and the key.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from downloader.config.load import check_writable, load_config, parse_config
from downloader.config.model import Config, ConfigError, ProjectConfig, RetryConfig

EXAMPLE = """\
api:
  base_url: https://www.growingio.com
  client_id: ${GIO_CLIENT_ID}
  token: ${GIO_TOKEN}
  rate_limit_per_second: 2
  link_expire_minutes: 5
projects:
  - ai: "0a1b2c3d"
    data_types: [visit, page, custom_event]
    export_types: [hour, day]
schedule:
  hour_lag_minutes: 30
  day_lag_minutes: 240
  retention_days: 15
storage:
  url: file:///var/lib/gio-downloader/raw
checkpoint: /var/lib/gio-downloader/checkpoint.db
concurrency:
  downloads: 8
"""

# The 10 data types of raw export 2.0, in the order of the vendor's table (API §2.2).
VENDOR_DATA_TYPES = ("visit", "page", "action", "action_tag", "custom_event",
                     "ads_track_activation", "ads_track_click", "pvar", "evar", "vstr")

TOKEN = "s3cr3t-token-value"
CLIENT_ID = "public-client-id"


@pytest.fixture(autouse=True)
def gio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIO_TOKEN", TOKEN)
    monkeypatch.setenv("GIO_CLIENT_ID", CLIENT_ID)
    for name in ("GIO_NOT_SET", "GIO_HOST", "GIO_RATE", "GIO_CLIENT_FALLBACK"):
        monkeypatch.delenv(name, raising=False)


def example() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(EXAMPLE))


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "gio.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None) -> Config:
    data = example()
    if change is not None:
        change(data)
    return load_config(write(tmp_path, data))


def assert_one_line(err: ConfigError, path: Path, *needles: str) -> None:
    text = str(err)
    assert "\n" not in text and "\r" not in text, text
    assert text.startswith(f"{path}: "), text
    for needle in needles:
        assert needle in text, text


# --- the happy path ----------------------------------------------------------------------------


def test_example_config_every_field(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    cfg = load_config(path)

    assert cfg.path == path
    assert cfg.api.base_url == "https://www.growingio.com"
    assert cfg.api.client_id == CLIENT_ID
    assert cfg.api.token == TOKEN
    assert cfg.api.rate_limit_per_second == 2.0
    assert cfg.api.link_expire_minutes == 5
    assert isinstance(cfg.api.link_expire_minutes, int)
    assert cfg.api.timeout_seconds == 60.0

    assert cfg.projects == (
        ProjectConfig("0a1b2c3d", ("visit", "page", "custom_event"), ("hour", "day")),)

    assert cfg.lags.hour == timedelta(minutes=30)
    assert cfg.lags.night_hour == timedelta(minutes=60)  # default
    assert cfg.lags.night_hours == frozenset({23, 0, 1})  # default
    assert cfg.lags.day == timedelta(minutes=240)
    assert cfg.lags.retention == timedelta(days=15)

    assert cfg.storage.url == "file:///var/lib/gio-downloader/raw"
    assert cfg.storage.scheme == "file"
    assert cfg.storage.local_root == Path("/var/lib/gio-downloader/raw")
    assert cfg.storage.endpoint_url is None
    assert cfg.storage.region is None
    assert cfg.checkpoint == Path("/var/lib/gio-downloader/checkpoint.db")

    assert cfg.downloads == 8
    assert cfg.partitions == 4  # default
    assert cfg.verify == "gzip"
    assert cfg.retry == RetryConfig(initial_backoff_seconds=5.0, max_backoff_seconds=300.0,
                                    max_attempts=8, not_ready_grace_minutes=240)
    assert cfg.log_format == "auto"
    assert cfg.log_level == "info"
    assert cfg.health_listen is None
    assert cfg.shutdown_grace_seconds == 10.0
    assert cfg.secrets == (TOKEN,)


def test_token_is_not_in_repr(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, EXAMPLE))
    assert TOKEN not in repr(cfg)
    assert TOKEN not in repr(cfg.api)


def test_parse_config_matches_load_config(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    assert parse_config(EXAMPLE, path) == load_config(path)


def test_bundled_example_file_is_valid(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    example_file = Path(__file__).resolve().parents[1] / "config.example.yaml"
    monkeypatch.setenv("GIO_CDP_API_KEY", "cdp-key-for-the-example")
    cfg = load_config(example_file)
    assert cfg.api is not None and cfg.api.token == TOKEN
    assert cfg.cdp is not None and cfg.cdp.api_key == "cdp-key-for-the-example"
    assert cfg.projects[0].ai == "0a1b2c3d"


def test_defaults_of_a_minimal_config(tmp_path: Path) -> None:
    minimal = {
        "api": {"token": "t"},
        "projects": [{"ai": "p1", "data_types": "all", "export_types": ["hour"]}],
        "storage": {"url": "s3://bucket/raw"},
        "checkpoint": "/var/lib/x/cp.db",
    }
    cfg = load_config(write(tmp_path, minimal))
    assert cfg.api.base_url == "https://www.growingio.com"
    assert cfg.api.client_id is None
    assert cfg.api.rate_limit_per_second == 2.0  # the vendor's 2 calls a second
    assert cfg.api.link_expire_minutes == 5
    assert cfg.projects[0].data_types == VENDOR_DATA_TYPES
    assert cfg.lags.hour == timedelta(minutes=30)
    assert cfg.lags.day == timedelta(minutes=240)
    assert cfg.lags.retention == timedelta(days=15)
    assert cfg.storage.scheme == "s3"
    assert (cfg.downloads, cfg.partitions) == (8, 4)
    assert cfg.retry == RetryConfig()
    assert (cfg.verify, cfg.log_format, cfg.log_level) == ("gzip", "auto", "info")


def test_data_types_all_gives_the_ten_vendor_types_in_order(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["projects"][0]["data_types"] = "all"

    assert load(tmp_path, change).projects[0].data_types == VENDOR_DATA_TYPES


@pytest.mark.parametrize(
    ("data_types", "expected"),
    [
        (["custom_event", "visit"], ("visit", "custom_event")),  # vendor order
        (["page", "page", "visit"], ("visit", "page")),  # duplicates dropped
        ("vstr", ("vstr",)),  # a single word
        (list(reversed(VENDOR_DATA_TYPES)), VENDOR_DATA_TYPES),
    ],
)
def test_data_types_are_normalised(tmp_path: Path, data_types: Any,
                                   expected: tuple[str, ...]) -> None:
    def change(d: dict[str, Any]) -> None:
        d["projects"][0]["data_types"] = data_types

    assert load(tmp_path, change).projects[0].data_types == expected


@pytest.mark.parametrize(
    ("export_types", "expected"),
    [(["day", "hour"], ("hour", "day")), ("day", ("day",)), (["hour", "hour"], ("hour",))],
)
def test_export_types_are_normalised(tmp_path: Path, export_types: Any,
                                     expected: tuple[str, ...]) -> None:
    def change(d: dict[str, Any]) -> None:
        d["projects"][0]["export_types"] = export_types

    assert load(tmp_path, change).projects[0].export_types == expected


def test_several_projects(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["projects"].append({"ai": "ffee-01_b", "data_types": ["vstr"], "export_types": "day"})

    assert load(tmp_path, change).projects[1] == ProjectConfig("ffee-01_b", ("vstr",), ("day",))


# --- ${VAR} expansion --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "raw", "expected"),
    [
        ({}, "${GIO_CLIENT_FALLBACK:-fallback-id}", "fallback-id"),
        ({"GIO_CLIENT_FALLBACK": "from-env"}, "${GIO_CLIENT_FALLBACK:-fallback-id}", "from-env"),
        ({}, "pre-${GIO_CLIENT_FALLBACK:-x}-post", "pre-x-post"),
        ({"GIO_HOST": "a", "GIO_RATE": "b"}, "${GIO_HOST}${GIO_RATE}", "ab"),
        ({}, "no-reference", "no-reference"),
        ({}, "${GIO_CLIENT_FALLBACK:-}", None),  # empty default: no client id
    ],
)
def test_env_expansion_in_strings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  env: dict[str, str], raw: str, expected: str | None) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def change(d: dict[str, Any]) -> None:
        d["api"]["client_id"] = raw

    assert load(tmp_path, change).api.client_id == expected


def test_env_expansion_in_url_and_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def change(d: dict[str, Any]) -> None:
        d["api"]["base_url"] = "https://${GIO_HOST:-www.growingio.com}/"
        d["api"]["rate_limit_per_second"] = "${GIO_RATE:-2}"

    cfg = load(tmp_path, change)
    assert cfg.api.base_url == "https://www.growingio.com"  # trailing slash dropped
    assert cfg.api.rate_limit_per_second == 2.0

    monkeypatch.setenv("GIO_HOST", "gio.example.internal:8443")
    monkeypatch.setenv("GIO_RATE", "0.5")
    cfg = load(tmp_path, change)
    assert cfg.api.base_url == "https://gio.example.internal:8443"
    assert cfg.api.rate_limit_per_second == 0.5


def test_env_default_applies_to_an_empty_variable(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd EnvironmentFile= lines like "GIO_RATE=" set the variable to the empty string.
    monkeypatch.setenv("GIO_RATE", "")

    def change(d: dict[str, Any]) -> None:
        d["api"]["rate_limit_per_second"] = "${GIO_RATE:-2}"

    assert load(tmp_path, change).api.rate_limit_per_second == 2.0


# --- other accepted spellings -----------------------------------------------------------------


@pytest.mark.parametrize("listen", ["127.0.0.1:9000", "0.0.0.0:1", "localhost:65535",
                                    "[::1]:9100"])
def test_health_listen_accepted(tmp_path: Path, listen: str) -> None:
    def change(d: dict[str, Any]) -> None:
        d["health"] = {"listen": listen}

    assert load(tmp_path, change).health_listen == listen


@pytest.mark.parametrize(
    ("storage", "url", "endpoint"),
    [
        ({"url": "s3://bucket/raw/gio"}, "s3://bucket/raw/gio", None),
        ({"url": "s3://bucket", "endpoint_url": "http://127.0.0.1:9000", "region": "x"},
         "s3://bucket", "http://127.0.0.1:9000"),
        ({"url": "file://localhost/srv/raw"}, "file://localhost/srv/raw", None),
        ({"url": "/srv/raw"}, "file:///srv/raw", None),
    ],
)
def test_storage_urls_accepted(tmp_path: Path, storage: dict[str, str], url: str,
                               endpoint: str | None) -> None:
    def change(d: dict[str, Any]) -> None:
        d["storage"] = storage

    cfg = load(tmp_path, change)
    assert cfg.storage.url == url
    assert cfg.storage.endpoint_url == endpoint


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    def change(d: dict[str, Any]) -> None:
        d["storage"]["url"] = "raw"
        d["checkpoint"] = "state/cp.db"

    cfg = load(tmp_path, change)
    assert cfg.storage.url == (tmp_path / "raw").as_uri()
    assert cfg.storage.local_root == tmp_path / "raw"
    assert cfg.checkpoint == tmp_path / "state" / "cp.db"


@pytest.mark.parametrize("folder", ["/srv/gio data/raw", "/srv/原始数据/raw"])
def test_local_root_of_a_plain_path_with_special_characters(tmp_path: Path, folder: str) -> None:
    def change(d: dict[str, Any]) -> None:
        d["storage"]["url"] = folder

    assert load(tmp_path, change).storage.local_root == Path(folder)


def test_numbers_as_strings_and_log_level_case(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["api"]["link_expire_minutes"] = "10080"  # the vendor's maximum, 7 days
        d["concurrency"]["downloads"] = "16"
        d["log"] = {"level": "WARNING", "format": "json"}

    cfg = load(tmp_path, change)
    assert cfg.api.link_expire_minutes == 10080
    assert cfg.downloads == 16
    assert (cfg.log_level, cfg.log_format) == ("warning", "json")


# --- mistakes ----------------------------------------------------------------------------------


def setter(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets ``a.b[0].c`` (list indexes written as .0.) to ``value``."""
    *parents, last = dotted.split(".")

    def change(d: dict[str, Any]) -> None:
        node: Any = d
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[int(last) if last.isdigit() else last] = value

    return change


def deleter(dotted: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = dotted.split(".")

    def change(d: dict[str, Any]) -> None:
        node: Any = d
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return change


def duplicate_project(d: dict[str, Any]) -> None:
    d["projects"].append(copy.deepcopy(d["projects"][0]))


MISTAKES: list[Any] = [
    pytest.param(setter("schedual", {"hour_lag_minutes": 30}), "schedual", "unknown key",
                 id="unknown-top-level-key"),
    pytest.param(setter("api.tokn", "x"), "api.tokn", "unknown key", id="unknown-api-key"),
    pytest.param(setter("schedule.hour_lag", 30), "schedule.hour_lag", "unknown key",
                 id="unknown-schedule-key"),
    pytest.param(setter("projects.0.export", ["hour"]), "projects[0].export", "unknown key",
                 id="unknown-project-key"),
    pytest.param(setter("storage.bucket", "b"), "storage.bucket", "unknown key",
                 id="unknown-storage-key"),
    pytest.param(setter("api", "https://www.growingio.com"), "api", "mapping",
                 id="api-not-a-mapping"),
    pytest.param(deleter("api.token"), "api.token", "required", id="missing-token"),
    pytest.param(setter("api.token", ""), "api.token", "empty", id="empty-token"),
    pytest.param(setter("api.token", "tok-5f1d\n"), "api.token", "control character",
                 id="token-trailing-newline"),
    pytest.param(setter("api.token", " tok-5f1d"), "api.token", "whitespace",
                 id="token-leading-space"),
    pytest.param(setter("api.client_id", "cid\r"), "api.client_id", "control character",
                 id="client-id-carriage-return"),
    pytest.param(setter("api.token", "${GIO_NOT_SET}"), "api.token", "GIO_NOT_SET",
                 id="missing-env-var"),
    pytest.param(setter("api.client_id", "id-${GIO_NOT_SET}"), "api.client_id", "GIO_NOT_SET",
                 id="missing-env-var-inside-text"),
    pytest.param(setter("projects.0.data_types", ["visit", "clicks"]), "projects[0].data_types",
                 "clicks", id="unknown-data-type"),
    pytest.param(setter("projects.0.data_types", ["custom_attr"]), "projects[0].data_types",
                 "custom_attr", id="data-type-of-export-1.0"),
    pytest.param(setter("projects.0.data_types", []), "projects[0].data_types", "non-empty",
                 id="empty-data-types"),
    pytest.param(deleter("projects.0.data_types"), "projects[0].data_types", "required",
                 id="missing-data-types"),
    pytest.param(setter("projects.0.export_types", ["hour", "week"]), "projects[0].export_types",
                 "week", id="unknown-export-type"),
    pytest.param(setter("projects.0.export_types", "all"), "projects[0].export_types", "all",
                 id="export-types-all-not-a-word"),
    pytest.param(setter("projects", []), "projects", "non-empty", id="empty-projects"),
    pytest.param(deleter("projects"), "nothing to download", "reports:", id="no-source"),
    pytest.param(setter("projects", {"ai": "0a1b2c3d"}), "projects", "list",
                 id="projects-not-a-list"),
    pytest.param(duplicate_project, "projects[1].ai", "twice", id="duplicate-ai"),
    pytest.param(setter("projects.0.ai", "0a1b 2c3d"), "projects[0].ai", "project ID",
                 id="bad-ai"),
    pytest.param(setter("api.base_url", "www.growingio.com"), "api.base_url", "URL",
                 id="base-url-without-scheme"),
    pytest.param(setter("api.base_url", "ftp://www.growingio.com"), "api.base_url", "URL",
                 id="base-url-ftp"),
    pytest.param(setter("api.base_url", "https://"), "api.base_url", "URL",
                 id="base-url-without-host"),
    pytest.param(setter("storage.url", "ftp://host/raw"), "storage.url", "scheme",
                 id="storage-ftp"),
    pytest.param(setter("storage.url", "file://relative/raw"), "storage.url", "absolute",
                 id="storage-file-relative"),
    pytest.param(setter("storage.url", "s3://"), "storage.url", "bucket", id="s3-no-bucket"),
    pytest.param(setter("storage.url", "s3:///prefix"), "storage.url", "bucket",
                 id="s3-empty-bucket"),
    pytest.param(deleter("storage.url"), "storage.url", "required", id="missing-storage-url"),
    pytest.param(setter("storage.endpoint_url", "minio:9000"), "storage.endpoint_url", "URL",
                 id="endpoint-without-scheme"),
    pytest.param(deleter("checkpoint"), "checkpoint", "required", id="missing-checkpoint"),
    pytest.param(setter("api.rate_limit_per_second", "fast"), "api.rate_limit_per_second",
                 "number", id="rate-not-numeric"),
    pytest.param(setter("api.rate_limit_per_second", True), "api.rate_limit_per_second",
                 "number", id="rate-boolean"),
    pytest.param(setter("api.rate_limit_per_second", 0), "api.rate_limit_per_second",
                 "between", id="rate-zero"),
    pytest.param(setter("api.rate_limit_per_second", -2), "api.rate_limit_per_second",
                 "between", id="rate-negative"),
    pytest.param(setter("api.rate_limit_per_second", 101), "api.rate_limit_per_second",
                 "between", id="rate-too-high"),
    pytest.param(setter("api.link_expire_minutes", 10081), "api.link_expire_minutes",
                 "10080", id="link-expire-over-7-days"),
    pytest.param(setter("api.link_expire_minutes", 0), "api.link_expire_minutes", "between",
                 id="link-expire-zero"),
    pytest.param(setter("api.link_expire_minutes", 2.5), "api.link_expire_minutes", "whole",
                 id="link-expire-fraction"),
    pytest.param(setter("api.link_expire_minutes", "5m"), "api.link_expire_minutes", "number",
                 id="link-expire-with-unit"),
    pytest.param(setter("concurrency.downloads", 0), "concurrency.downloads", "between",
                 id="downloads-zero"),
    pytest.param(setter("concurrency.downloads", 257), "concurrency.downloads", "between",
                 id="downloads-too-many"),
    pytest.param(setter("concurrency.downloads", "eight"), "concurrency.downloads", "number",
                 id="downloads-not-numeric"),
    pytest.param(setter("concurrency.partitions", 0), "concurrency.partitions", "between",
                 id="partitions-zero"),
    pytest.param(setter("schedule.retention_days", 0), "schedule.retention_days", "between",
                 id="retention-zero"),
    pytest.param(setter("schedule.hour_lag_minutes", -1), "schedule.hour_lag_minutes",
                 "between", id="hour-lag-negative"),
    pytest.param(setter("schedule.night_hours", [23, 24]), "schedule.night_hours", "0-23",
                 id="night-hour-24"),
    pytest.param(setter("schedule.night_hours", "23"), "schedule.night_hours", "0-23",
                 id="night-hours-not-a-list"),
    pytest.param(setter("retry.max_attempts", 0), "retry.max_attempts", "between",
                 id="max-attempts-zero"),
    pytest.param(setter("download.verify", "md5"), "download.verify", "md5",
                 id="verify-md5"),
    pytest.param(setter("log.format", "xml"), "log.format", "xml", id="log-format-xml"),
    pytest.param(setter("log.level", "verbose"), "log.level", "verbose", id="log-level"),
    pytest.param(setter("health.listen", "9000"), "health.listen", "host:port",
                 id="listen-port-only"),
    pytest.param(setter("health.listen", ":9000"), "health.listen", "host:port",
                 id="listen-no-host"),
    pytest.param(setter("health.listen", "localhost:"), "health.listen", "host:port",
                 id="listen-no-port"),
    pytest.param(setter("health.listen", "localhost:http"), "health.listen", "host:port",
                 id="listen-named-port"),
    pytest.param(setter("health.listen", "localhost:0"), "health.listen", "host:port",
                 id="listen-port-zero"),
    pytest.param(setter("health.listen", "localhost:65536"), "health.listen", "host:port",
                 id="listen-port-too-big"),
    pytest.param(setter("shutdown_grace_seconds", -1), "shutdown_grace_seconds", "between",
                 id="negative-grace"),
]


@pytest.mark.parametrize(("change", "key", "hint"), MISTAKES)
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, change: Callable[[dict], None],
                                            key: str, hint: str) -> None:
    data = example()
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, path, f": {key}: ", hint)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        pytest.param("api: [unclosed\n", "malformed YAML", id="unclosed-flow-list"),
        pytest.param("api:\n  token: x\n   base_url: y\n", "malformed YAML", id="bad-indent"),
        pytest.param("api:\n\ttoken: x\n", "malformed YAML", id="tab-indent"),
        pytest.param('api: "unterminated\n', "malformed YAML", id="unterminated-string"),
        pytest.param("", "empty", id="empty-file"),
        pytest.param("# nothing but a comment\n", "empty", id="comment-only"),
        pytest.param("- api\n- projects\n", "mapping", id="top-level-list"),
    ],
)
def test_file_level_mistakes(tmp_path: Path, text: str, hint: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, path, hint)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  token: x\nprojects: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, path, "malformed YAML", "line ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, path, "not found")
    assert not path.exists()


def test_unreadable_file_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert_one_line(info.value, tmp_path, "cannot read")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gio.yaml"
    path.write_bytes(EXAMPLE.encode("utf-8") + "# 注释\n".encode("gb18030"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, path, "cannot read")


@pytest.mark.parametrize(
    ("dotted", "value", "key"),
    [("concurrency.downloads", float("inf"), "concurrency.downloads"),
     ("concurrency.downloads", float("nan"), "concurrency.downloads"),
     ("schedule.retention_days", float("inf"), "schedule.retention_days")],
    ids=["downloads-inf", "downloads-nan", "retention-inf"],
)
def test_non_finite_whole_numbers_are_config_errors(tmp_path: Path, dotted: str, value: float,
                                                    key: str) -> None:
    data = example()
    setter(dotted, value)(data)
    path = write(tmp_path, data)  # YAML writes these as .inf / .nan
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, path, f": {key}: ")


@pytest.mark.parametrize("value", [float("nan"), "nan"], ids=["yaml-nan", "string-nan"])
def test_nan_rate_is_a_config_error(tmp_path: Path, value: Any) -> None:
    data = example()
    data["api"]["rate_limit_per_second"] = value
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, path, ": api.rate_limit_per_second: ")


def test_nothing_is_written_while_parsing(tmp_path: Path) -> None:
    root = tmp_path / "raw"

    def change(d: dict[str, Any]) -> None:
        d["storage"]["url"] = str(root)
        d["checkpoint"] = str(tmp_path / "state" / "cp.db")

    load(tmp_path, change)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gio.yaml"]


# --- check_writable ----------------------------------------------------------------------------


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
@pytest.mark.parametrize("is_dir", [True, False])
def test_check_writable_read_only_folder(tmp_path: Path, is_dir: bool) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        target = folder if is_dir else folder / "checkpoint.db"
        with pytest.raises(ConfigError) as info:
            check_writable(target, "checkpoint", is_dir=is_dir)
        text = str(info.value)
        assert "\n" not in text and "checkpoint" in text and str(folder) in text
        # A folder that does not exist yet below the read-only one cannot be made either.
        with pytest.raises(ConfigError):
            check_writable(folder / "a" / "b", "storage.url", is_dir=True)
    finally:
        folder.chmod(0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
def test_check_writable_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.db"
    path.write_bytes(b"")
    path.chmod(0o400)
    with pytest.raises(ConfigError, match="not writable"):
        check_writable(path, "checkpoint", is_dir=False)


@pytest.mark.parametrize(
    ("below", "is_dir"),
    [("sub/checkpoint.db", False), ("checkpoint.db", False), ("sub/raw", True), ("", True)],
    ids=["file-below-file", "file-in-file", "folder-below-file", "file-as-folder"],
)
def test_check_writable_under_a_regular_file(tmp_path: Path, below: str, is_dir: bool) -> None:
    regular = tmp_path / "regular"
    regular.write_text("not a folder")
    target = regular / below if below else regular
    with pytest.raises(ConfigError) as info:
        check_writable(target, "checkpoint", is_dir=is_dir)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("checkpoint: ")
    assert str(regular) in text and "not a folder" in text
    assert _listing(tmp_path) == ["regular"]


@pytest.mark.parametrize("is_dir", [True, False])
def test_check_writable_missing_nested_path_passes_and_creates_nothing(tmp_path: Path,
                                                                        is_dir: bool) -> None:
    (tmp_path / "existing").mkdir()
    check_writable(tmp_path / "existing" / "a" / "b" / "c", "storage.url", is_dir=is_dir)
    check_writable(tmp_path / "x" / "y", "storage.url", is_dir=is_dir)
    assert _listing(tmp_path) == ["existing"]


def test_check_writable_existing_targets_pass(tmp_path: Path) -> None:
    (tmp_path / "cp.db").write_bytes(b"")
    check_writable(tmp_path, "storage.url", is_dir=True)
    check_writable(tmp_path / "cp.db", "checkpoint", is_dir=False)
    check_writable(tmp_path / "new.db", "checkpoint", is_dir=False)
    assert _listing(tmp_path) == ["cp.db"]


# --- reports: (statistics exports) ---------------------------------------------------------------


def _only_reports(entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data.pop("projects")
        data["reports"] = [entry]
    return change


def test_a_config_with_only_reports_is_valid(tmp_path: Path) -> None:
    cfg = load(tmp_path, _only_reports({
        "project_uid": "nxog09md", "charts": ["YoX28w7R"], "dashboards": "all",
        "segments": ["Sg01Ab23"], "user_variables": ["user_name"], "rules": True,
        "interval": "hour"}))
    assert cfg.projects == ()
    (report,) = cfg.reports
    assert report.charts == ("YoX28w7R",) and report.dashboards is None
    assert report.segments == ("Sg01Ab23",) and report.rules and report.interval == "hour"


@pytest.mark.parametrize(("entry", "needle"), [
    pytest.param({"project_uid": "nxog09md", "charts": ["short"]}, "charts", id="bad-id"),
    pytest.param({"project_uid": "nxog09md", "graphs": ["YoX28w7R"]}, "graphs",
                 id="unknown-report-kind"),
    pytest.param({"project_uid": "nxog09md", "interval": "week"}, "interval", id="bad-interval"),
    pytest.param({"project_uid": "nxog09md", "segments": "some"}, "segments",
                 id="segments-word-not-all"),
    pytest.param({"project_uid": "nxog09md", "user_variables": ["user name"]},
                 "user_variables", id="bad-user-variable"),
    pytest.param({"charts": ["YoX28w7R"]}, "project_uid", id="missing-project-uid"),
])
def test_bad_reports_entries_get_one_line(tmp_path: Path, entry: dict[str, Any],
                                          needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, _only_reports(entry))
    assert_one_line(info.value, tmp_path / "gio.yaml", needle)
# --- the cdp: block (exports-spec §1) ------------------------------------------------------------

CDP_KEY = "cdp-api-key-value"


def cdp_only(**cdp: Any) -> dict[str, Any]:
    data = example()
    del data["api"], data["projects"]
    data["cdp"] = {
        "base_url": "https://cdp.example.com/",
        "api_key": "${GIO_CDP_KEY}",
        "exports": [
            {"segment_users": {"project_id": "Pj01Ab23", "segment_id": "Sg01Ab23",
                               "tags": ["Tg01Ab23"], "properties": ["usr_name"]}},
            {"tag_users": {"tag_id": "Tg01Ab23", "properties": ["usr_name"], "detail": True}},
            {"tag_users": {"tag_key": "tag_vip", "properties": ["usr_name"]}},
            {"analysis": {"project_id": "Pj01Ab23", "id": "An01Ab23", "type": "FUNNELS"}},
        ],
        **cdp,
    }
    return data


def test_cdp_only_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIO_CDP_KEY", CDP_KEY)
    cfg = load_config(write(tmp_path, cdp_only(charset="UTF-16LE")))
    assert cfg.api is None and cfg.projects == () and cfg.cdp is not None
    assert cfg.cdp.base_url == "https://cdp.example.com" and cfg.cdp.charset == "UTF-16LE"
    assert [(e.kind, e.ident) for e in cfg.cdp.exports] == [
        ("segment_users", "Sg01Ab23"), ("tag_users", "Tg01Ab23"), ("tag_users", "tag_vip"),
        ("analysis", "An01Ab23")]
    assert CDP_KEY not in repr(cfg) and CDP_KEY in cfg.secrets


CDP_MISTAKES: list[Any] = [
    pytest.param(setter("cdp.api_key", "${GIO_NOT_SET}"), "cdp.api_key", "GIO_NOT_SET",
                 id="missing-api-key-variable"),
    pytest.param(deleter("cdp.api_key"), "cdp.api_key", "required", id="no-api-key"),
    pytest.param(setter("cdp.exports.2.tag_users.tag_key", "vip"),
                 "cdp.exports[2].tag_users.tag_key", "tag_", id="tag-key-without-tag_"),
    pytest.param(setter("cdp.exports.3.analysis.type", "PATHS"),
                 "cdp.exports[3].analysis.type", "PATHS", id="unknown-analysis-type"),
    pytest.param(deleter("cdp.exports.3.analysis.id"), "cdp.exports[3].analysis.id",
                 "required", id="analysis-without-id"),
    pytest.param(deleter("cdp.exports.0.segment_users.segment_id"),
                 "cdp.exports[0].segment_users.segment_id", "required",
                 id="segment-without-id"),
    pytest.param(deleter("cdp.exports.1.tag_users.tag_id"), "cdp.exports[1].tag_users",
                 "tag_id or tag_key", id="tag-users-without-id"),
    pytest.param(setter("cdp.exports.1.tag_users.tag_id", "Tg01"),
                 "cdp.exports[1].tag_users.tag_id", "8 letters", id="short-tag-id"),
    pytest.param(setter("cdp.exports.0.funnel", {"id": "An01Ab23"}), "cdp.exports[0]",
                 "segment_users", id="two-kinds-in-one-entry"),
    pytest.param(deleter("cdp.base_url"), "cdp.base_url", "required", id="no-base-url"),
]


@pytest.mark.parametrize(("change", "key", "hint"), CDP_MISTAKES)
def test_cdp_mistakes_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   change: Callable[[dict], None], key: str, hint: str) -> None:
    monkeypatch.setenv("GIO_CDP_KEY", CDP_KEY)
    data = cdp_only()
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, path, f"{key}", hint)
    assert CDP_KEY not in str(info.value)
