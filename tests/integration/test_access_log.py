"""The access log: one JSON object per request with CONFIG.md's keys, the
combined format, and rotation of a file log."""

import datetime
import re

import pytest

from harness import base_config, wait_for

JSON_KEYS = {"time", "client_ip", "method", "host", "path", "query", "protocol", "status",
             "bytes_in", "bytes_out", "duration_ms", "route", "upstream", "upstream_server",
             "upstream_duration_ms", "request_id", "user_agent", "tls_version"}


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def ward(module_group, app):
    routes = [{"name": "logged", "match": {"path_prefix": "/"}, "upstream": "backend"}]
    cfg = base_config({"backend": [app]}, routes=routes,
                      logging={"access_log": {"path": "stdout", "format": "json"}})
    return module_group.ward(cfg)


def entry_for(ward, path):
    def find():
        return next((e for e in ward.json_log_entries() if e.get("path") == path), None)
    return wait_for(find, 5, f"an access log line for {path}")


def test_json_line_has_every_key_with_right_values(ward, app):
    r = ward.get("/logme?a=1&b=2", headers={"Host": "log.example.test",
                                           "User-Agent": "ward-test/1"})
    assert r.status == 200
    e = entry_for(ward, "/logme")
    assert JSON_KEYS <= set(e), JSON_KEYS - set(e)
    assert e["client_ip"] == "127.0.0.1"
    assert e["method"] == "GET"
    assert e["host"] in ("log.example.test", "log.example.test:80")
    assert e["query"] in ("a=1&b=2", "?a=1&b=2")
    assert e["protocol"] == "HTTP/1.1"
    assert e["status"] == 200
    assert e["bytes_out"] >= len(r.body)
    assert isinstance(e["bytes_in"], int)
    assert e["duration_ms"] >= 0
    assert e["route"] == "logged"
    assert e["upstream"] == "backend"
    assert e["upstream_server"] == app.address
    assert 0 <= e["upstream_duration_ms"] <= e["duration_ms"] + 1
    assert e["user_agent"] == "ward-test/1"
    assert e["tls_version"] in (None, "", "-")


def test_time_is_rfc3339_utc_and_recent(ward):
    ward.get("/timed")
    e = entry_for(ward, "/timed")
    t = e["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", t), t
    when = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 60


def test_durations_reflect_a_slow_upstream(ward):
    ward.get("/slow?delay=300")
    e = entry_for(ward, "/slow")
    assert e["upstream_duration_ms"] >= 290
    assert e["duration_ms"] >= 290


def test_bytes_in_counts_the_request_body(ward):
    ward.request("POST", "/upload", body=b"z" * 5000)
    e = entry_for(ward, "/upload")
    assert e["method"] == "POST"
    assert e["bytes_in"] >= 5000


def test_status_is_the_one_sent(ward):
    ward.get("/teapot?status=418")
    assert entry_for(ward, "/teapot")["status"] == 418


def test_one_line_per_request(ward):
    for _ in range(5):
        ward.get("/counted")
    wait_for(lambda: len([e for e in ward.json_log_entries() if e.get("path") == "/counted"]) == 5,
             5, "five lines for five requests")


def test_every_line_is_json(ward):
    ward.get("/any")
    entry_for(ward, "/any")
    for line in ward.access_log_lines():
        assert line.lstrip().startswith("{"), line


def test_unrouted_404_is_logged(group):
    app = group.whoami("app")
    routes = [{"match": {"host": "only.test"}, "upstream": "backend"}]
    ward = group.ward(base_config({"backend": [app]}, routes=routes))
    assert ward.get("/missing").status == 404
    e = entry_for(ward, "/missing")
    assert e["status"] == 404


def test_combined_format(group):
    app = group.whoami("app")
    ward = group.ward(base_config({"backend": [app]},
                                  logging={"access_log": {"format": "combined"}}))
    ward.get("/c?x=1", headers={"User-Agent": "ward-test/2", "Referer": "http://ref.test/"})
    line = wait_for(lambda: next((ln for ln in ward.access_log_lines() if "/c?x=1" in ln), None),
                    5, "a combined log line")
    pattern = (r'127\.0\.0\.1 - \S+ \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
               r'"GET /c\?x=1 HTTP/1\.1" 200 \d+ "http://ref\.test/" "ward-test/2"')
    assert re.match(pattern, line), line


def test_access_log_off(group):
    app = group.whoami("app")
    ward = group.ward(base_config({"backend": [app]}, logging={"access_log": {"path": "off"}}))
    for _ in range(3):
        assert ward.get("/quiet").status == 200
    assert "/quiet" not in ward.stdout_text()


def test_file_log_rotates_at_max_size_keeping_max_files(group, tmp_path):
    app = group.whoami("app")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    log = log_dir / "access.log"
    ward = group.ward(base_config({"backend": [app]}, logging={
        "access_log": {"path": str(log), "max_size": "2KiB", "max_files": 2}}))
    for i in range(60):  # ~60 lines of a few hundred bytes: many times 2 KiB
        assert ward.get(f"/rotate/{i}").status == 200

    def rotated():
        files = sorted(p for p in log_dir.iterdir() if p.name.startswith("access"))
        return files if len(files) == 3 else None

    files = wait_for(rotated, 10, "the current log plus two rotated files")
    for f in files:
        assert f.stat().st_size <= 2048 + 1024, (f, f.stat().st_size)
    assert log.exists()
    wait_for(lambda: any(e.get("path") == "/rotate/59" for e in ward.json_log_entries(log)),
             5, "the newest request in the current file")
