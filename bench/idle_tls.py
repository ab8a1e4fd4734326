#!/usr/bin/env python3
"""Opens COUNT TLS connections to a proxy and holds them idle (idle-10k-tls).

Each connection: TCP connect, TLS handshake (ALPN http/1.1, no certificate
check: the certificate is bench/run's throwaway one), one `GET /` answered
200, then nothing: an idle keep-alive client, the way a browser leaves one.
At most --window connections are being set up at a time, and the whole
set-up is bounded by --timeout seconds.

Protocol with bench/run (stdout, one line each):
  opened N failed F seconds S     once set-up is over (N may be < COUNT)
then it waits on stdin:
  "check" -> "alive N closed C"   connections still open / closed by the peer
  EOF     -> closes everything and exits
It exits on its own after --hold seconds in any case (bounded), and exits 1
if no connection could be opened.
"""

import argparse
import resource
import selectors
import socket
import ssl
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: ward-bench-idle\r\n\r\n"


class Conn:
    __slots__ = ("sock", "tls", "state", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.tls = None
        self.state = "connect"  # connect -> handshake -> send -> read -> idle
        self.buf = b""


def response_complete(buf):
    """True when buf holds a whole response head and its Content-Length body."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or b"0")
    return len(buf) >= end + 4 + length


def status_ok(buf):
    return buf.startswith(b"HTTP/1.1 200") or buf.startswith(b"HTTP/1.0 200")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--window", type=int, default=200, help="connections set up at once")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole set-up")
    ap.add_argument("--hold", type=float, default=60.0, help="seconds to hold at most")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.count + 32 > hard:
        print(f"error: {args.count} connections need more than ulimit -n {hard}", flush=True)
        return 1

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    sel = selectors.DefaultSelector()
    started = opened = failed = pending = 0
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    def fail(c):
        nonlocal failed, pending
        failed += 1
        pending -= 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def advance(c):
        """Moves c on as far as it can go without blocking."""
        nonlocal opened, pending
        try:
            if c.state == "connect":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    return fail(c)
                sel.unregister(c.sock)
                c.tls = ctx.wrap_socket(c.sock, do_handshake_on_connect=False)
                c.sock = c.tls
                sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                c.state = "handshake"
            if c.state == "handshake":
                c.tls.do_handshake()
                c.state = "send"
            if c.state == "send":
                c.tls.send(REQUEST)  # 70 bytes: one record, written whole
                c.state = "read"
                sel.modify(c.sock, selectors.EVENT_READ, c)
            if c.state == "read":
                while True:
                    data = c.tls.recv(65536)
                    if not data:
                        return fail(c)
                    c.buf += data
                    if response_complete(c.buf):
                        break
                if not status_ok(c.buf):
                    return fail(c)
                c.buf = b""
                c.state = "idle"
                opened += 1
                pending -= 1
        except ssl.SSLWantReadError:
            sel.modify(c.sock, selectors.EVENT_READ, c)
        except ssl.SSLWantWriteError:
            sel.modify(c.sock, selectors.EVENT_WRITE, c)
        except (OSError, ValueError):
            fail(c)

    while opened + failed < args.count and time.monotonic() < deadline:
        while pending < args.window and started < args.count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((args.host, args.port))
            started += 1
            pending += 1
            c = Conn(s)
            if rc not in (0, 115):  # 115: EINPROGRESS
                s.close()
                failed += 1
                pending -= 1
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, _ in sel.select(timeout=0.05):
            c = key.data
            if c.state != "idle":
                advance(c)
    # Whatever is still being set up at the deadline counts as failed.
    for key in list(sel.get_map().values()):
        c = key.data
        if c.state != "idle":
            fail(c)
    seconds = time.monotonic() - t0
    print(f"opened {opened} failed {failed} seconds {seconds:.2f}", flush=True)
    if opened == 0:
        return 1

    hold_end = time.monotonic() + args.hold
    closed = 0
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    while time.monotonic() < hold_end:
        for key, _ in sel.select(timeout=max(0.0, min(1.0, hold_end - time.monotonic()))):
            if key.data is None:
                line = sys.stdin.readline()
                if not line:
                    return 0
                if line.strip() == "check":
                    print(f"alive {opened - closed} closed {closed}", flush=True)
                continue
            # An idle connection that turns readable was closed (or talked to)
            # by the proxy: count it and stop watching it.
            closed += 1
            sel.unregister(key.fileobj)
            key.fileobj.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
