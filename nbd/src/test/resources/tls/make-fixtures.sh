#!/usr/bin/env bash
# Regenerates the TLS fixtures of the nbd unit tests (the unit tier runs no external tools, so they
# are committed). Test-only keys: never use them for anything else. Valid for 100 years, except
# expired/. Run from anywhere: nbd/src/test/resources/tls/make-fixtures.sh
#   good/    QEMU's layout for both ends: ca-cert.pem, server-cert.pem + server-key.pem (PKCS#1 RSA,
#            as gnutls' certtool writes it), client-cert.pem + client-key.pem (SEC1 EC, as
#            openssl ecparam -genkey writes it)
#   rogue/   a client whose certificate another CA signed; its ca-cert.pem holds both CAs, so it
#            trusts our server while our server must refuse it
#   expired/ good/'s CA with a server certificate that expired at once
#   (the PEM key fixtures are the tls module's: tls/src/test/resources/keys/make-keys.sh)
set -euo pipefail
cd "$(dirname "$0")"
rm -rf good rogue expired && mkdir good rogue expired
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
days=36500

ca() {   # DIR NAME: a CA key and self-signed certificate
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1/ca-key.pem" -out "$1/ca-cert.pem" -days $days -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
sign() { # CA-DIR KEY CN PURPOSE OUT [DAYS]: a certificate for KEY signed by the CA in CA-DIR
  openssl req -new -key "$2" -out "$tmp/req.csr" -subj "/CN=$3"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s' \
    "$4" "$( [ "$4" = serverAuth ] && echo 'subjectAltName=DNS:localhost,IP:127.0.0.1' )" > "$tmp/ext.cnf"
  openssl x509 -req -in "$tmp/req.csr" -CA "$1/ca-cert.pem" -CAkey "$1/ca-key.pem" -CAcreateserial -CAserial "$tmp/serial" \
    -days "${6:-$days}" -extfile "$tmp/ext.cnf" -out "$5" 2>/dev/null
}

ca "$tmp" "Ferry test CA"
cp "$tmp/ca-cert.pem" good/
openssl genrsa -traditional -out good/server-key.pem 2048 2>/dev/null
sign "$tmp" good/server-key.pem localhost serverAuth good/server-cert.pem
openssl ecparam -name prime256v1 -genkey -out good/client-key.pem
sign "$tmp" good/client-key.pem "ferry test client" clientAuth good/client-cert.pem

mkdir "$tmp/rogue" && ca "$tmp/rogue" "Rogue CA"
cat "$tmp/ca-cert.pem" "$tmp/rogue/ca-cert.pem" > rogue/ca-cert.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out rogue/client-key.pem
sign "$tmp/rogue" rogue/client-key.pem "ferry test client" clientAuth rogue/client-cert.pem

cp "$tmp/ca-cert.pem" expired/
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out expired/server-key.pem 2>/dev/null
sign "$tmp" expired/server-key.pem localhost serverAuth expired/server-cert.pem -1

