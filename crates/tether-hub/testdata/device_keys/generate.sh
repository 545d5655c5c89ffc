#!/bin/sh
# Regenerates the device key fixtures of crates/tether-hub/src/device_key_tests.rs with the
# openssl command line, as a Mender client makes its key: for each key, its public key
# (NAME.pub.pem, SPKI PEM) and the base64 signature of message.json (NAME.sig, as in
# X-MEN-Signature). The private keys are thrown away.
set -eu
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
key() {
    name=$1
    shift
    openssl genpkey "$@" -out "$work/$name.pem" 2>/dev/null
    openssl pkey -in "$work/$name.pem" -pubout -out "$name.pub.pem"
    if [ "$name" = ed25519 ]; then
        openssl pkeyutl -sign -rawin -inkey "$work/$name.pem" -in message.json | base64 -w0 > "$name.sig"
    else
        openssl dgst -sha256 -sign "$work/$name.pem" message.json | base64 -w0 > "$name.sig"
    fi
}
key rsa1024 -algorithm RSA -pkeyopt rsa_keygen_bits:1024
key rsa2048 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key rsa3072 -algorithm RSA -pkeyopt rsa_keygen_bits:3072
key rsa4096 -algorithm RSA -pkeyopt rsa_keygen_bits:4096
key rsa8192 -algorithm RSA -pkeyopt rsa_keygen_bits:8192
key p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
key p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
key ed25519 -algorithm ED25519
openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 -out "$work/dsa.params" 2>/dev/null
key dsa -paramfile "$work/dsa.params"
