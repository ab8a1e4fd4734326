"""Integration harness: real ward and ward-whoami processes on loopback.

Everything here is bounded: processes have start deadlines, sockets have
timeouts, and the only way to wait for something is wait_for(), which polls
a predicate until a deadline. Configs are built as Python dicts and written
as JSON, which is valid YAML (YAML 1.2 is a superset of JSON).
"""

import copy
import hashlib
import http.client
import json
import os
import pathlib
import re
import select
import socket
import subprocess
import time

import pytest

HOST = "127.0.0.1"
WARD_BIN = os.environ.get("WARD_BIN", "")
WHOAMI_BIN = os.environ.get("WHOAMI_BIN", "")
SOURCE_DIR = pathlib.Path(os.environ.get("WARD_SOURCE_DIR", pathlib.Path(__file__).parents[2]))

# scripts/test.sh sets WARD_SANITIZER for sanitizer builds: they run several
# times slower, so timing slack is scaled and memory bounds do not apply.
SANITIZER = os.environ.get("WARD_SANITIZER", "")
TIME_SCALE = 3.0 if SANITIZER else 1.0


def slack(seconds):
    """Seconds allowed past a deadline, scaled for sanitizer builds."""
    return seconds * TIME_SCALE


# ward-whoami's size= body: byte i is PATTERN[i % 64].
PATTERN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def pattern_bytes(n, offset=0):
    """The first n bytes of whoami's size= body starting at `offset`."""
    reps = (offset % 64 + n) // 64 + 1
    start = offset % 64
    return (PATTERN * reps)[start:start + n]


# ---------------------------------------------------------------- waiting

def wait_for(predicate, timeout, what, interval=0.02):
    """Polls predicate() until it returns something truthy, and returns that.

    Exceptions from the predicate count as "not yet". Fails the test with
    `what` after `timeout` seconds. This is the only allowed way to wait.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def free_port():
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_accepts(port, timeout=0.5):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_refuses(port, timeout=0.5):
    """True when a connect to the port is actively refused."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def require_binary(path, var):
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{var} is not set to an executable (got {path!r}); "
                    "run the integration tests through ctest or set it by hand")


# ---------------------------------------------------------------- responses

class Response:
    """One parsed HTTP/1.x response."""

    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in wire order
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return self.header(name) is not None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} body={self.body[:200]!r}>"


class ConnectionClosed(Exception):
    pass


class Conn:
    """A raw client connection: send exact bytes, parse replies one by one."""

    def __init__(self, port, timeout=5.0, host=HOST):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.timeout = timeout

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(1 << 16)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionClosed(f"peer closed; unparsed bytes: {self.buf[:200]!r}")
        self.buf += chunk

    def _read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("response line too long")
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self):
        """Reads a status line and headers; returns a body-less Response."""
        line = self._read_line()
        parts = line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise AssertionError(f"bad status line {line!r}")
        headers = []
        while True:
            h = self._read_line()
            if not h:
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        return Response(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers, b"")

    def read_response(self, head_request=False, allow_interim=False):
        """Reads one whole response (skipping 1xx unless allow_interim)."""
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and not allow_interim:
                continue
            break
        if head_request or r.status in (204, 304) or 100 <= r.status < 200:
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            r.body = self._read_chunked()
        elif r.header("Content-Length") is not None:
            r.body = self._read_exact(int(r.header("Content-Length")))
        else:
            r.body = self.read_until_close()
        return r

    def _read_chunked(self):
        body = bytearray()
        while True:
            size_line = self._read_line().split(b";")[0].strip()
            size = int(size_line, 16)
            if size == 0:
                while self._read_line():  # trailers up to the empty line
                    pass
                return bytes(body)
            body += self._read_exact(size)
            if self._read_exact(2) != b"\r\n":
                raise AssertionError("chunk not followed by CRLF")

    def read_until_close(self, timeout=None):
        """All bytes until the peer closes; fails if it stays open too long."""
        limit = timeout or self.timeout
        deadline = time.monotonic() + limit
        data = bytearray(self.buf)
        self.buf = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"connection still open after {limit}s; "
                                         f"got {bytes(data[:300])!r}")
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(1 << 16)
                except ConnectionResetError:
                    chunk = b""
                except socket.timeout:
                    continue
                if not chunk:
                    return bytes(data)
                data += chunk
        finally:
            self.sock.settimeout(self.timeout)

    def closed_within(self, timeout):
        """True when the peer closes (discarding any bytes) within timeout."""
        try:
            self.read_until_close(timeout)
            return True
        except AssertionError:
            return False

    def nothing_within(self, seconds):
        """True when no byte arrives and the connection stays open for `seconds`."""
        if self.buf:
            return False
        ready, _, _ = select.select([self.sock], [], [], seconds)
        return not ready


def parse_responses(data):
    """Parses every complete response in `data` (bytes read until close)."""
    out = []
    conn = Conn.__new__(Conn)
    conn.buf = data
    conn.sock = _ClosedSocket()
    conn.timeout = 0
    while conn.buf:
        try:
            out.append(conn.read_response())
        except ConnectionClosed:
            break
    return out


class _ClosedSocket:
    def recv(self, _n):
        return b""

    def settimeout(self, _t):
        pass


def exchange_until_close(port, data, timeout=5.0):
    """Sends raw bytes, reads until the peer closes; returns (responses, raw)."""
    with Conn(port, timeout=timeout) as c:
        c.send(data)
        raw = c.read_until_close(timeout)
    return parse_responses(raw), raw


def request(port, method="GET", path="/", headers=None, body=None, timeout=10.0):
    """One request on a fresh http.client connection; returns a Response."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(f"HTTP/{r.version / 10:.1f}", r.status, r.reason,
                        list(r.getheaders()), data)
    finally:
        conn.close()


def curl(*args, timeout=60):
    """Runs curl (silent, errors shown) against loopback; returns CompletedProcess."""
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                          capture_output=True, timeout=timeout + 10)


def self_signed_cert(directory):
    """An ECDSA P-256 certificate for localhost and 127.0.0.1 with its key,
    made with the openssl CLI in `directory`; returns (cert, key) paths."""
    crt, key = directory / "self-signed.crt", directory / "self-signed.key"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                        str(crt), "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return crt, key


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- processes

class ProcessGroup:
    """Owns every process a test starts; kill_all() runs at teardown."""

    def __init__(self, tmp_dir):
        self.tmp_dir = pathlib.Path(tmp_dir)
        self.procs = []
        self._n = 0

    def track(self, proc):
        self.procs.append(proc)
        return proc

    def new_dir(self, prefix):
        self._n += 1
        d = self.tmp_dir / f"{prefix}{self._n}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def whoami(self, name, **kw):
        return Whoami(self, name, **kw)

    def ward(self, config, **kw):
        return Ward(self, config, **kw)

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()


class Whoami:
    """A ward-whoami upstream on a loopback port it picked itself."""

    def __init__(self, group, name, unhealthy_file=None, threads=1, deadline=10.0, tls=None):
        """`tls`: a (cert, key) pair of files: the upstream speaks HTTPS."""
        require_binary(WHOAMI_BIN, "WHOAMI_BIN")
        self.name = name
        args = [WHOAMI_BIN, "--name", name, "--listen", f"{HOST}:0", "--threads", str(threads)]
        if unhealthy_file:
            args += ["--unhealthy-file", str(unhealthy_file)]
        if tls:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        self.proc = group.track(subprocess.Popen(args, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE))
        ready, _, _ = select.select([self.proc.stdout], [], [], deadline)
        line = self.proc.stdout.readline().decode() if ready else ""
        m = re.fullmatch(r"listening (\S+):(\d+)\n", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"ward-whoami {name} did not report its port within "
                                 f"{deadline}s: {line!r}")
        self.port = int(m.group(2))
        self.address = f"{HOST}:{self.port}"

    def get(self, path="/", **kw):
        return request(self.port, "GET", path, **kw)

    def count(self):
        """Whole requests received so far (see whoami.cpp, /__count)."""
        return self.get("/__count", timeout=5).json()["requests"]

    def connections(self):
        return self.get("/__count", timeout=5).json()["connections"]

    def requests(self):
        """Requests received so far (their heads), not counting /__count or /health."""
        return self.get("/__count", timeout=5).json()["requests"]

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


class Metrics(dict):
    """Prometheus samples: {(name, frozenset(labels.items())): value}."""

    def value(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.items() if n == name and want <= ls)

    def has(self, name, **labels):
        want = set(labels.items())
        return any(n == name and want <= ls for (n, ls) in self)

    def names(self):
        return {n for (n, _) in self}


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    out = Metrics()
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"bad exposition line: {line!r}"
        labels = {}
        rest = m.group(2) or ""
        pos = 0
        while pos < len(rest):
            lm = _LABEL.match(rest, pos)
            assert lm, f"bad labels in {line!r}"
            value = lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            labels[lm.group(1)] = value
            pos = lm.end()
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def base_config(upstreams, routes=None, limits=None, workers=1, **extra):
    """A config with one listener "web" and, unless given, one catch-all route
    "main" to the first upstream. `upstreams` maps a name to a list of
    servers (Whoami objects or "host:port" strings) or to a whole upstream
    dict. Ports are filled in by Ward.
    """
    ups = {}
    for name, value in upstreams.items():
        if isinstance(value, dict):
            ups[name] = value
        else:
            ups[name] = {"servers": [server_address(s) for s in value]}
    if routes is None:
        routes = [{"name": "main", "match": {"path_prefix": "/"}, "upstream": next(iter(ups))}]
    cfg = {"workers": workers, "listeners": [{"name": "web"}], "routes": routes,
           "upstreams": ups}
    if limits:
        cfg["limits"] = limits
    cfg.update(extra)
    return cfg


def server_address(s):
    return s.address if isinstance(s, Whoami) else s


class Ward:
    """A running ward. `config` is a dict (see base_config) or YAML text;
    `command` is what precedes the config path (("run", "-c") also works);
    `prefix` runs ward through a wrapper that ends by exec'ing it (so the
    process stays ward's).

    For a dict, the admin address and every listener without an address get
    a free loopback port. Stdout (the access log by default) and stderr (the
    error log) go to files in the ward's own directory.
    """

    def __init__(self, group, config, env=None, deadline=15.0, wait=True, command=("-c",),
                 prefix=()):
        require_binary(WARD_BIN, "WARD_BIN")
        self.group = group
        self.dir = group.new_dir("ward")
        self.listener_ports = {}
        if isinstance(config, dict):
            config = copy.deepcopy(config)
            self._assign_ports(config)
            text = json.dumps(config, indent=2) + "\n"
        else:
            text = config
        self.config = config
        self.config_path = self.dir / "ward.yaml"
        self.config_path.write_text(text)
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = group.track(subprocess.Popen(
                [*prefix, WARD_BIN, *command, str(self.config_path)], stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, cwd=self.dir, env=full_env))
        self.pid = self.proc.pid
        if wait:
            self.wait_ready(deadline)

    def _assign_ports(self, cfg):
        admin = cfg.setdefault("admin", {})
        if "address" not in admin:
            admin["address"] = f"{HOST}:{free_port()}"
        for listener in cfg.get("listeners", []):
            if "address" not in listener:
                listener["address"] = f"{HOST}:{free_port()}"
            self.listener_ports[listener["name"]] = int(listener["address"].rsplit(":", 1)[1])
        self.admin_port = int(admin["address"].rsplit(":", 1)[1])

    @property
    def port(self):
        """The port of listener "web" (or the only listener)."""
        if "web" in self.listener_ports:
            return self.listener_ports["web"]
        return next(iter(self.listener_ports.values()))

    def wait_ready(self, deadline=15.0):
        def ready_or_exited():
            if self.proc.poll() is not None:
                return True
            if self.admin("/healthz", timeout=1).status != 200:
                return False
            return all(port_accepts(p) for p in self.listener_ports.values())
        try:
            wait_for(ready_or_exited, deadline, "ward to become ready")
        except AssertionError as e:
            raise AssertionError(f"{e}; stderr:\n{self.stderr_text()}") from None
        if self.proc.poll() is not None:
            self.fail_exited()

    def fail_exited(self):
        err = self.stderr_text()
        if "not supported yet" in err:
            pytest.skip(f"ward does not support this config yet: {err.strip()[:500]}")
        raise AssertionError(f"ward exited with {self.proc.returncode}; stderr:\n{err}")

    # -- talking to it
    def url(self, path="/", listener=None):
        port = self.listener_ports[listener] if listener else self.port
        return f"http://{HOST}:{port}{path}"

    def get(self, path="/", **kw):
        return request(self.port, "GET", path, **kw)

    def request(self, method, path="/", **kw):
        return request(self.port, method, path, **kw)

    def conn(self, timeout=5.0, listener=None):
        return Conn(self.listener_ports[listener] if listener else self.port, timeout=timeout)

    def admin(self, path, timeout=5.0):
        return request(self.admin_port, "GET", path, timeout=timeout)

    def metrics(self):
        r = self.admin("/metrics")
        assert r.status == 200, r
        return parse_metrics(r.body.decode())

    # -- the process
    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ward still running {timeout}s later; stderr:\n"
                                 f"{self.stderr_text()[-3000:]}") from None

    def running(self):
        return self.proc.poll() is None

    def _status_kib(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{key} not in /proc/{self.pid}/status")

    def rss_kib(self):
        return self._status_kib("VmRSS")

    def hwm_kib(self):
        """Peak resident set size so far (VmHWM)."""
        return self._status_kib("VmHWM")

    def sanitized(self):
        """True when ward runs under a sanitizer (memory bounds do not apply)."""
        with open(f"/proc/{self.pid}/maps") as f:
            maps = f.read()
        return bool(SANITIZER) or any(s in maps for s in ("libasan", "libtsan", "libubsan"))

    def stderr_text(self):
        return self.stderr_path.read_text(errors="replace")

    def stdout_text(self):
        return self.stdout_path.read_text(errors="replace")

    def access_log_lines(self, path=None):
        """Lines of the access log (stdout unless a file path is given)."""
        text = pathlib.Path(path).read_text(errors="replace") if path else self.stdout_text()
        return [line for line in text.splitlines() if line.strip()]

    def json_log_entries(self, path=None):
        """Access log lines that parse as JSON objects."""
        out = []
        for line in self.access_log_lines(path):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out


def run_ward(*args, timeout=30, env=None, cwd=None):
    """Runs the ward binary with arguments (e.g. "check", "-c", f)."""
    require_binary(WARD_BIN, "WARD_BIN")
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([WARD_BIN, *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL)
