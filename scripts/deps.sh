#!/usr/bin/env bash
# Installs the Debian 12 packages ward needs to build and test, and only those
# that are missing: a second run installs nothing and does not touch apt.
#
#   scripts/deps.sh           build + test packages
#   scripts/deps.sh --bench   also wrk, nginx and haproxy (bench/)
#   scripts/deps.sh --check   list what is missing, install nothing (exit 1 if any)
set -euo pipefail

build_pkgs=(
  cmake ninja-build g++ ccache pkg-config
  libboost1.81-dev libssl-dev libnghttp2-dev libyaml-cpp-dev libspdlog-dev
  libgtest-dev libgmock-dev
  # compress filter: zlib for gzip, libbrotli for br (well-kept codecs; no
  # reason to write our own)
  zlib1g-dev libbrotli-dev
  # rate_limit's redis store: hiredis's reply parser (proxy/store/redis.cpp)
  libhiredis-dev
)
test_pkgs=(
  python3 python3-pytest python3-h2 curl openssl nghttp2-client
  # tests/integration/test_testssl.py scans a TLS listener with it (its own
  # dependencies, dnsutils, bsdextrautils and procps, come with it)
  testssl.sh
  # tests/integration/test_dns_upstreams.py runs in a network namespace of
  # its own (unshare, ip), so its DNS lookups never leave the machine
  util-linux iproute2
  # the rate_limit redis integration test starts its own on a loopback port
  redis-server
  # Fuzzing: clang-14 only recommends the compiler-rt archives, and
  # -fsanitize=fuzzer needs libclang_rt.fuzzer from libclang-rt-14-dev.
  clang libclang-rt-14-dev clang-format
)
# bench/run: the load generators (wrk; h2load from nghttp2-client), the two
# proxies ward is measured against, openssl for its throwaway certificates,
# taskset and lscpu (util-linux) for pinning and the machine description.
bench_pkgs=(wrk nginx-light haproxy nghttp2-client openssl python3 util-linux)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
check_only=0
for arg in "$@"; do
  case "$arg" in
    --bench) want+=("${bench_pkgs[@]}") ;;
    --check) check_only=1 ;;
    -h | --help)
      sed -n '2,8s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    *)
      echo "deps.sh: unknown option $arg" >&2
      exit 2
      ;;
  esac
done

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${want[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "deps: all ${#want[@]} packages present"
  exit 0
fi
if ((check_only)); then
  echo "deps: missing: ${missing[*]}"
  exit 1
fi

sudo=()
if ((EUID != 0)); then
  if ! command -v sudo >/dev/null; then
    echo "deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi

echo "deps: installing ${missing[*]}"
log="$(mktemp -t ward-deps.XXXXXX)"
trap 'rm -f "$log"' EXIT
apt_get=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
  -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
if ! { "${apt_get[@]}" update && "${apt_get[@]}" install --no-install-recommends "${missing[@]}"; } \
  >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "deps: apt-get failed (last lines of its output above)" >&2
  exit 1
fi

still=()
for pkg in "${missing[@]}"; do
  installed "$pkg" || still+=("$pkg")
done
if ((${#still[@]})); then
  echo "deps: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "deps: installed ${#missing[@]} package(s)"
