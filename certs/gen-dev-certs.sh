#!/usr/bin/env bash
# Makes development TLS certificates in certs/ (next to this script):
#
#   dev-ca.crt  dev-ca.key   a local CA (ECDSA P-256, 10 years): trust it in
#                            your client, never in a production trust store
#   dev.crt     dev.key      a server certificate signed by it (ECDSA P-256,
#                            825 days) for localhost, 127.0.0.1 and ::1
#
#   certs/gen-dev-certs.sh              make whatever is missing; keep the rest
#   certs/gen-dev-certs.sh NAME...      also cover these DNS names (dev.crt is
#                                       remade when it lacks one; names given
#                                       earlier are kept only if given again)
#   certs/gen-dev-certs.sh --force ...  make everything anew
#
# Idempotent: existing files are kept while they are valid (the server
# certificate is remade when it was not signed by dev-ca.crt or expires
# within 30 days; a new CA always gets a new server certificate). Needs only
# the openssl command. Keys are written unencrypted with mode 0600; none of
# these files may be committed (.gitignore excludes certs/*.crt, *.key, *.pem).
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
force=0
names=()
while (($#)); do
  case "$1" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,21s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    -*)
      echo "gen-dev-certs.sh: unknown option $1" >&2
      exit 2
      ;;
    *)
      # A DNS name: letters, digits, hyphens, dots, an optional leading "*."
      if [[ ! "$1" =~ ^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
        echo "gen-dev-certs.sh: '$1' is not a DNS name" >&2
        exit 2
      fi
      names+=("$1")
      ;;
  esac
  shift
done

command -v openssl >/dev/null || { echo "gen-dev-certs.sh: openssl not found" >&2; exit 1; }

ca_crt="$dir/dev-ca.crt"
ca_key="$dir/dev-ca.key"
crt="$dir/dev.crt"
key="$dir/dev.key"

tmp="$(mktemp -d -t ward-dev-certs.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
umask 077

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "${names[@]}"; do
  san+=",DNS:$n"
done

# Extensions spelled out here rather than taken from the system openssl.cnf,
# so the result is the same on every machine.
cat >"$tmp/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

ca_ok() {
  [[ -s "$ca_crt" && -s "$ca_key" ]] &&
    openssl x509 -in "$ca_crt" -noout -checkend 2592000 >/dev/null 2>&1
}

leaf_ok() {
  [[ -s "$crt" && -s "$key" ]] &&
    openssl verify -CAfile "$ca_crt" "$crt" >/dev/null 2>&1 &&
    openssl x509 -in "$crt" -noout -checkend 2592000 >/dev/null 2>&1 &&
    [[ "$(openssl x509 -in "$crt" -noout -pubkey | openssl sha256)" == \
      "$(openssl pkey -in "$key" -pubout | openssl sha256)" ]]
}

# Every extra name asked for is in the current certificate.
leaf_has_names() {
  local sans
  sans="$(openssl x509 -in "$crt" -noout -ext subjectAltName 2>/dev/null)" || return 1
  for n in "${names[@]}"; do
    [[ ",${sans//[[:space:]]/}," == *",DNS:$n,"* ]] || return 1
  done
}

made=()
if ((force)) || ! ca_ok; then
  new_key "$ca_key"
  openssl req -x509 -new -config "$tmp/openssl.cnf" -extensions ca_ext -key "$ca_key" \
    -subj "/O=ward development/CN=ward development CA $(date -u +%Y-%m-%d)" \
    -sha256 -days 3650 -out "$ca_crt"
  chmod 644 "$ca_crt"
  made+=("$ca_crt")
  force=1  # the old server certificate was signed by the old CA
fi

if ((force)) || ! leaf_ok || ! leaf_has_names; then
  new_key "$key"
  openssl req -new -config "$tmp/openssl.cnf" -key "$key" \
    -subj "/O=ward development/CN=localhost" -out "$tmp/dev.csr"
  # 825 days: the longest validity Apple platforms accept for a TLS server
  # certificate, whatever CA issued it.
  openssl x509 -req -in "$tmp/dev.csr" -CA "$ca_crt" -CAkey "$ca_key" \
    -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 825 \
    -extfile "$tmp/openssl.cnf" -extensions leaf_ext -out "$crt" 2>/dev/null
  chmod 644 "$crt"
  made+=("$crt")
fi

openssl verify -CAfile "$ca_crt" "$crt" >/dev/null

if ((${#made[@]} == 0)); then
  echo "certs: dev-ca.crt and dev.crt already present and valid (--force remakes them)"
  exit 0
fi
for f in "${made[@]}"; do
  echo "certs: wrote ${f#"$dir"/} and its key"
done
echo "certs: $(openssl x509 -in "$crt" -noout -ext subjectAltName | tail -n 1 | sed 's/^ *//')"
echo "certs: trust the CA in your client, e.g. curl --cacert certs/dev-ca.crt https://localhost:8443/"
