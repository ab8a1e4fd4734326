#!/usr/bin/env bash
# Builds ward and runs it with conf/ward.yaml in front of two demo upstreams:
#   ward-whoami app-1 on 127.0.0.1:9001, app-2 on 127.0.0.1:9002
#   ward on :8080 (admin on 127.0.0.1:9901), in the foreground
# Then, from another terminal:  curl http://localhost:8080/
# Ctrl-C stops all three (ward drains first).
#
#   scripts/demo.sh [-c CONFIG]   another config (its upstreams must be 9001/9002)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

config=conf/ward.yaml
while (($#)); do
  case "$1" in
    -c)
      [[ $# -ge 2 ]] || { echo "demo.sh: -c needs a file" >&2; exit 2; }
      config="$2"
      shift
      ;;
    -h | --help)
      sed -n '2,8s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    *)
      echo "demo.sh: unknown option $1" >&2
      exit 2
      ;;
  esac
  shift
done

scripts/deps.sh
scripts/build.sh ward ward-whoami
# The HTTPS listener's certificate: a local dev CA and a localhost cert,
# made once (certs/README.md; nothing here is a real site's key).
certs/gen-dev-certs.sh

ward=build/ward
whoami=build/tests/support/ward-whoami

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 8080 8443 9001 9002 9901; do
  if port_busy "$port"; then
    echo "demo.sh: port $port is already in use (another demo running?)" >&2
    exit 1
  fi
done

"$ward" check -c "$config"

pids=()
# shellcheck disable=SC2317  # called from the EXIT trap
stop() {
  # Ignore further INT/TERM (a second Ctrl-C) so clean-up always finishes.
  trap '' INT TERM
  trap - EXIT
  echo
  echo "demo.sh: stopping"
  # ward first, so it drains before its upstreams go away.
  if [[ -n "${ward_pid:-}" ]]; then
    kill -TERM "$ward_pid" 2>/dev/null || true
    wait "$ward_pid" 2>/dev/null || true
  fi
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$whoami" --name app-1 --listen 127.0.0.1:9001 &
pids+=($!)
"$whoami" --name app-2 --listen 127.0.0.1:9002 &
pids+=($!)
for port in 9001 9002; do
  for _ in $(seq 50); do
    port_busy "$port" && break
    sleep 0.1
  done
done

echo "demo.sh: ward on http://localhost:8080/ and https://localhost:8443/" \
  "(admin http://127.0.0.1:9901/), Ctrl-C stops"
echo "demo.sh: try: curl http://localhost:8080/   curl -k https://localhost:8443/"
echo "demo.sh:      curl --cacert certs/dev-ca.crt https://localhost:8443/   curl http://127.0.0.1:9901/metrics"
# In the background so that Ctrl-C reaches this script's trap, which sends
# ward SIGTERM (graceful drain); wait returns when ward exits on its own too.
"$ward" -c "$config" &
ward_pid=$!
rc=0
wait "$ward_pid" || rc=$?
ward_pid=""
exit "$rc"
