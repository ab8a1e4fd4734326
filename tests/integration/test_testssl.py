"""testssl.sh (Debian's package, `testssl`) against a ward TLS listener.

One bounded run of protocols (-p), standard cipher categories (-s) and every
vulnerability check (-U) against the real binary on loopback, then assertions
on its JSON findings: no SSLv2/SSLv3/TLS 1.0/TLS 1.1, TLS 1.2 and 1.3 offered,
no NULL/aNULL/EXPORT/LOW (DES, RC4)/3DES-IDEA/obsolete-CBC suites, nothing
HIGH or CRITICAL and nothing flagged vulnerable.

Offline by construction: the target is an IP literal (no SNI, nothing to
resolve), --nodns none forbids every DNS lookup, NXCONNECT keeps its
start-up probes of the local openssl on loopback, and without --phone-out it
fetches no CRL or OCSP (checked once with strace: every connect() went to
127.0.0.1 or ::1). -S (certificate details) is left out: it is
slow and judges the test certificate, not ward.

The listener's default certificate is RSA 2048, signed by the CA from
certs/gen-dev-certs.sh: nearly every legacy suite (static RSA key exchange,
3DES, RC4, EXPORT, CBC) authenticates with RSA, so only an RSA certificate
lets testssl see one that ward mistakenly enabled. The ECDSA dev.crt from the
same script is served by SNI (test_tls.py covers ECDSA handshakes).
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from harness import HOST, SOURCE_DIR, base_config

# testssl is a bash script that forks a few thousand times (its start-up
# alone parses its cipher table with one awk per suite); the run costs about
# 60 s of CPU however fast ward is, and takes 80 s on an otherwise idle
# 2-core machine, but 4 to 6 minutes when other jobs load that machine.
# The bound is for a hang, not a budget (ctest's TIMEOUT for this file is
# raised to match in tests/CMakeLists.txt); --connect-timeout and
# --openssl-timeout bound each of its connections.
TESTSSL_TIMEOUT = 480.0

# Findings that must be present, and what their text must start with.
EXPECTED = {
    "SSLv2": "not offered",
    "SSLv3": "not offered",
    "TLS1": "not offered",
    "TLS1_1": "not offered",
    "TLS1_2": "offered",
    "TLS1_3": "offered",
    "cipherlist_NULL": "not offered",
    "cipherlist_aNULL": "not offered",
    "cipherlist_EXPORT": "not offered",
    "cipherlist_LOW": "not offered",  # 64-bit, DES, RC2, RC4
    "cipherlist_3DES_IDEA": "not offered",
    "cipherlist_AVERAGE": "not offered",  # "Obsolete CBC ciphers (AES, ARIA etc.)"
    "cipherlist_STRONG": "offered",  # AEAD
}
# Every check -U runs in testssl 3.0.8; each must report, and report OK/INFO
# (a missing one means the check did not run, which must not pass quietly).
VULNERABILITY_IDS = (
    "heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
    "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
    "LOGJAM", "BEAST", "LUCKY13", "RC4",
)
# WARN findings about testssl's own environment, not about the server:
# Debian's OpenSSL 3 has no GOST engine.
ENVIRONMENT_WARNINGS = {"engine_problem"}
# "not vulnerable", "likely not vulnerable" and "probably not vulnerable" are
# the negatives; "VULNERABLE", "potentially vulnerable" (LUCKY13) and "likely
# VULNERABLE" are not.
_VULNERABLE = re.compile(r"(?<!not )vulnerable", re.IGNORECASE)


def problems(findings):
    """What is wrong in testssl's flat JSON findings; empty when all is well."""
    by_id = {}
    for f in findings:
        by_id.setdefault(f.get("id", ""), []).append(f)
    out = []
    for fid, want in EXPECTED.items():
        got = by_id.get(fid)
        if not got:
            out.append(f"{fid}: no finding (the check did not run)")
        elif not all(f["finding"].startswith(want) for f in got):
            out.append(f"{fid}: want '{want}', got " + "; ".join(
                f"{f['severity']} '{f['finding']}'" for f in got))
    for fid in VULNERABILITY_IDS:
        got = by_id.get(fid)
        if not got:
            out.append(f"{fid}: no finding (the check did not run)")
        elif any(f["severity"] not in ("OK", "INFO") for f in got):
            out.append(f"{fid}: " + "; ".join(f"{f['severity']} '{f['finding']}'" for f in got))
    for f in findings:
        fid, sev, text = f.get("id", ""), f.get("severity", ""), f.get("finding", "")
        line = f"{fid}: {sev} '{text}'"
        if sev in ("HIGH", "CRITICAL", "FATAL") or fid == "scanProblem":
            out.append(line)
        elif _VULNERABLE.search(text):
            out.append(line)
        elif sev == "WARN" and fid not in ENVIRONMENT_WARNINGS:
            out.append(f"{line} (the check was inconclusive)")
    return sorted(set(out))


def find_testssl():
    for name in ("testssl", "testssl.sh"):  # Debian's name, upstream's
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("testssl.sh is not installed (Debian package testssl.sh): run scripts/deps.sh")


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """certs/gen-dev-certs.sh run on a copy in a temp dir (it writes next to
    itself; the checkout's certs/ stays untouched), plus an RSA 2048 leaf
    for 127.0.0.1 signed by its CA."""
    d = tmp_path_factory.mktemp("certs")
    script = d / "gen-dev-certs.sh"
    shutil.copy(SOURCE_DIR / "certs" / "gen-dev-certs.sh", script)
    r = subprocess.run([str(script)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    (d / "rsa.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:rsa.localhost\n"
                               "extendedKeyUsage=serverAuth\n"
                               "keyUsage=critical,digitalSignature,keyEncipherment\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "rsa.key"),
            "-out", str(d / "rsa.csr"), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(d / "rsa.csr"), "-CA", str(d / "dev-ca.crt"),
            "-CAkey", str(d / "dev-ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(d / "rsa.ext"), "-out", str(d / "rsa.crt"))
    return d


@pytest.fixture(scope="module")
def ward(module_group, certs):
    app = module_group.whoami("app")
    cfg = base_config({"backend": [app]}, filters=[{"security_headers": {}}])
    cfg["listeners"] = [{"name": "secure", "tls": {"certificates": [
        {"cert": str(certs / "rsa.crt"), "key": str(certs / "rsa.key")},
        {"cert": str(certs / "dev.crt"), "key": str(certs / "dev.key")},
    ]}}]
    return module_group.ward(cfg)


def test_testssl_finds_nothing_weak_or_vulnerable(ward, tmp_path):
    if os.environ.get("WARD_SANITIZER"):
        # The scan judges OpenSSL's configuration, which a sanitizer does not
        # change, and costs minutes of a bash script's forks; test_tls and
        # test_http2 give the sanitizers ward's TLS paths.
        pytest.skip("testssl.sh runs in the plain build only (CI time)")
    binary = find_testssl()
    port = ward.listener_ports["secure"]
    report = tmp_path / "testssl.json"
    cmd = [binary, "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
           "--sneaky", "--connect-timeout", "10", "--openssl-timeout", "10",
           "--jsonfile", str(report), "-p", "-s", "-U", f"{HOST}:{port}"]
    # TMPDIR: its scratch files. NXCONNECT: the address its start-up probes
    # of the local openssl "connect" to; the default, "invalid.", is a DNS
    # query to the resolver for each of ~30 probes.
    env = dict(os.environ, TMPDIR=str(tmp_path), NXCONNECT="127.0.0.1:0")
    started = time.monotonic()
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                           cwd=tmp_path, timeout=TESTSSL_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"testssl did not finish in {TESTSSL_TIMEOUT}s; output so far:\n{out[-4000:]}")
    took = time.monotonic() - started
    output = (r.stdout + r.stderr).decode(errors="replace")
    print(f"testssl took {took:.0f}s\n{output}")  # shown by pytest on failure
    assert r.returncode == 0, f"testssl exited {r.returncode}:\n{output[-4000:]}"
    assert report.exists(), f"testssl wrote no JSON report:\n{output[-4000:]}"
    findings = json.loads(report.read_text())
    found = problems(findings)
    assert not found, "testssl findings against ward:\n  " + "\n  ".join(found)
    assert ward.running()


# A trimmed real report of testssl 3.0.8 against `openssl s_server -cipher
# 'ALL:@SECLEVEL=0' -min_protocol TLSv1`: the checker above must flag it, or
# the scan could pass while seeing nothing.
WEAK_SERVER_FINDINGS = [
    {"id": "engine_problem", "severity": "WARN",
     "finding": "No engine or GOST support via engine with your /usr/bin/openssl"},
    {"id": "SSLv2", "severity": "OK", "finding": "not offered"},
    {"id": "SSLv3", "severity": "OK", "finding": "not offered"},
    {"id": "TLS1", "severity": "LOW", "finding": "offered (deprecated)"},
    {"id": "TLS1_1", "severity": "LOW", "finding": "offered (deprecated)"},
    {"id": "TLS1_2", "severity": "OK", "finding": "offered"},
    {"id": "TLS1_3", "severity": "OK", "finding": "offered with final"},
    {"id": "cipherlist_NULL", "severity": "OK", "finding": "not offered"},
    {"id": "cipherlist_aNULL", "severity": "CRITICAL", "finding": "offered"},
    {"id": "cipherlist_EXPORT", "severity": "OK", "finding": "not offered"},
    {"id": "cipherlist_LOW", "severity": "OK", "finding": "not offered"},
    {"id": "cipherlist_3DES_IDEA", "severity": "INFO", "finding": "not offered"},
    {"id": "cipherlist_AVERAGE", "severity": "LOW", "finding": "offered"},
    {"id": "cipherlist_STRONG", "severity": "OK", "finding": "offered"},
    {"id": "heartbleed", "severity": "OK", "finding": "not vulnerable, no heartbeat extension"},
    {"id": "fallback_SCSV", "severity": "OK", "finding": "supported"},
    {"id": "BEAST", "severity": "LOW",
     "finding": "VULNERABLE -- but also supports higher protocols  TLSv1.1 TLSv1.2 "
                "(likely mitigated)"},
    {"id": "LUCKY13", "severity": "LOW", "finding": "potentially vulnerable, uses TLS CBC ciphers"},
]


def test_checker_flags_a_weak_server():
    found = "\n".join(problems(WEAK_SERVER_FINDINGS))
    for fid in ("TLS1:", "TLS1_1:", "cipherlist_aNULL:", "cipherlist_AVERAGE:", "BEAST:",
                "LUCKY13:", "CCS: no finding"):
        assert fid in found, f"{fid} not flagged in:\n{found}"
    assert "engine_problem" not in found
    assert "SSLv2" not in found and "heartbleed" not in found
