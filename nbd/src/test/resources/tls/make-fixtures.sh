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
#   keys/    one RSA and one EC key in each encoding PemFiles reads, an Ed25519 key, and encrypted keys it refuses
set -euo pipefail
cd "$(dirname "$0")"
rm -rf good rogue expired keys && mkdir good rogue expired keys
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

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out keys/rsa-pkcs8.pem 2>/dev/null
openssl pkey -in keys/rsa-pkcs8.pem -traditional -out keys/rsa-pkcs1.pem
openssl req -x509 -key keys/rsa-pkcs8.pem -out keys/rsa-cert.pem -days $days -subj "/CN=rsa" 2>/dev/null
openssl ecparam -name secp384r1 -genkey -out keys/ec-sec1.pem              # with its EC PARAMETERS block
openssl pkey -in keys/ec-sec1.pem -out keys/ec-pkcs8.pem
openssl genpkey -algorithm ed25519 -out keys/ed25519.pem
openssl pkcs8 -topk8 -in keys/rsa-pkcs8.pem -passout pass:secret -out keys/encrypted-pkcs8.pem
openssl rsa -in keys/rsa-pkcs8.pem -traditional -aes128 -passout pass:secret -out keys/encrypted-pkcs1.pem 2>/dev/null
