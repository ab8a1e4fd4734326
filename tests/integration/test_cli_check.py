"""The command line: `ward check`, `ward -c` refusing a bad file, `ward version`."""

import re
import socket
import textwrap

from harness import HOST, base_config, free_port, run_ward

GOOD = """\
workers: 1
admin:
  address: 127.0.0.1:{admin}
listeners:
  - name: web
    address: 127.0.0.1:{web}
routes:
  - match: {{ path_prefix: / }}
    upstream: app
upstreams:
  app:
    servers: [127.0.0.1:{upstream}]
"""

# Several problems at once; each is on a known line.
BAD = """\
workers: 1
bogus_top_level_key: 1
listeners:
  - name: web
    address: 127.0.0.1:{web}
limits:
  header_timeout: 10
routes:
  - match: {{ path_prefix: / }}
    upstream: missing_upstream
upstreams:
  app:
    servers: [127.0.0.1:{upstream}]
"""
# problem -> lines where ward may report it (the key or its value, or the
# route item for an undefined upstream)
BAD_LINES = {"bogus_top_level_key": {2}, "header_timeout": {7},
             "missing_upstream": {9, 10}}


def write(tmp_path, text, name="ward.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def good_config(tmp_path, web=None):
    return write(tmp_path, GOOD.format(admin=free_port(), web=web or free_port(),
                                       upstream=free_port()))


def error_lines(output, path):
    """{line: message} of every `file:line:col: message` line."""
    out = {}
    for line in output.splitlines():
        m = re.match(re.escape(str(path)) + r":(\d+):(\d+): (.+)", line)
        if m:
            out.setdefault(int(m.group(1)), []).append(m.group(3))
    return out


def test_check_accepts_a_good_file(tmp_path):
    res = run_ward("check", "-c", str(good_config(tmp_path)))
    assert res.returncode == 0, res.stderr
    assert "configuration ok" in res.stdout + res.stderr


def test_check_binds_nothing(tmp_path):
    # The listener's port is held by us: check must not try to bind it.
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        res = run_ward("check", "-c", str(good_config(tmp_path, web=port)))
    assert res.returncode == 0, res.stderr


def test_check_lists_every_problem_with_file_line_col(tmp_path):
    path = write(tmp_path, BAD.format(web=free_port(), upstream=free_port()))
    res = run_ward("check", "-c", str(path))
    assert res.returncode == 1
    found = error_lines(res.stdout + res.stderr, path)
    for word, lines in BAD_LINES.items():
        assert lines & set(found), f"no error for {word} on {lines}: {res.stdout}{res.stderr}"
    assert "configuration ok" not in res.stdout


def test_run_refuses_a_bad_file_with_the_same_errors(tmp_path):
    path = write(tmp_path, BAD.format(web=free_port(), upstream=free_port()))
    res = run_ward("-c", str(path), timeout=15)
    assert res.returncode != 0
    found = error_lines(res.stdout + res.stderr, path)
    for word, lines in BAD_LINES.items():
        assert lines & set(found), f"no error for {word} on {lines}: {res.stderr}"


def test_missing_listeners_is_an_error(tmp_path):
    path = write(tmp_path, textwrap.dedent("""\
        routes:
          - match: { path_prefix: / }
            upstream: app
        upstreams:
          app:
            servers: [127.0.0.1:9]
        """))
    res = run_ward("check", "-c", str(path))
    assert res.returncode == 1
    assert "listeners" in res.stdout + res.stderr


def test_bad_units_are_errors(tmp_path):
    text = GOOD.format(admin=free_port(), web=free_port(), upstream=free_port())
    text += "limits:\n  idle_timeout: 5 minutes\n  max_body_size: 10 parsecs\n"
    path = write(tmp_path, text)
    res = run_ward("check", "-c", str(path))
    assert res.returncode == 1
    n = text.count("\n")
    found = error_lines(res.stdout + res.stderr, path)
    assert {n - 1, n} <= set(found), res.stdout + res.stderr


def test_environment_substitution(tmp_path):
    text = GOOD.replace("servers: [127.0.0.1:{upstream}]",
                        "servers: [\"127.0.0.1:${{WARD_TEST_UPSTREAM_PORT:-9000}}\"]")
    path = write(tmp_path, text.format(admin=free_port(), web=free_port()))
    assert run_ward("check", "-c", str(path)).returncode == 0
    assert run_ward("check", "-c", str(path),
                    env={"WARD_TEST_UPSTREAM_PORT": "9001"}).returncode == 0


def test_unset_environment_variable_is_an_error(tmp_path):
    text = GOOD.replace("servers: [127.0.0.1:{upstream}]",
                        "servers: [\"127.0.0.1:${{WARD_TEST_SURELY_UNSET_VAR}}\"]")
    path = write(tmp_path, text.format(admin=free_port(), web=free_port()))
    res = run_ward("check", "-c", str(path))
    assert res.returncode == 1
    assert "WARD_TEST_SURELY_UNSET_VAR" in res.stdout + res.stderr


def test_unreadable_file_is_an_error(tmp_path):
    res = run_ward("check", "-c", str(tmp_path / "does-not-exist.yaml"))
    assert res.returncode == 1
    assert "does-not-exist.yaml" in res.stdout + res.stderr


def test_duplicate_listener_address_is_an_error(tmp_path):
    port = free_port()
    text = GOOD.format(admin=free_port(), web=port, upstream=free_port())
    text = text.replace("routes:", f"  - name: web2\n    address: 127.0.0.1:{port}\nroutes:")
    path = write(tmp_path, text)
    res = run_ward("check", "-c", str(path))
    assert res.returncode == 1
    assert error_lines(res.stdout + res.stderr, path), res.stdout + res.stderr


def test_version(tmp_path):
    res = run_ward("version")
    assert res.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", res.stdout), res.stdout


def test_help(tmp_path):
    res = run_ward("--help")
    assert res.returncode == 0
    assert "check" in res.stdout + res.stderr


def test_run_subcommand_serves(group):
    app = group.whoami("app")
    ward = group.ward(base_config({"app": [app]}), command=("run", "-c"))
    assert ward.get("/").header("X-Whoami") == "app"
