#!/usr/bin/env bash
# Regenerates the PEM key fixtures of PemFilesTest (the unit tier runs no external tools, so they are
# committed): one RSA and one EC key in each encoding PemFiles reads, an Ed25519 key, and encrypted keys
# it refuses. Test-only keys: never use them for anything else. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"
rm -f ./*.pem
days=36500
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-pkcs8.pem 2>/dev/null
openssl pkey -in rsa-pkcs8.pem -traditional -out rsa-pkcs1.pem
openssl req -x509 -key rsa-pkcs8.pem -out rsa-cert.pem -days $days -subj "/CN=rsa" 2>/dev/null
openssl ecparam -name secp384r1 -genkey -out ec-sec1.pem              # with its EC PARAMETERS block
openssl pkey -in ec-sec1.pem -out ec-pkcs8.pem
openssl genpkey -algorithm ed25519 -out ed25519.pem
openssl pkcs8 -topk8 -in rsa-pkcs8.pem -passout pass:secret -out encrypted-pkcs8.pem
openssl rsa -in rsa-pkcs8.pem -traditional -aes128 -passout pass:secret -out encrypted-pkcs1.pem 2>/dev/null
