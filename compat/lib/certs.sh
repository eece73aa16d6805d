# shellcheck shell=bash
# Test certificates for the compat runners' TLS scenarios, made with the `openssl` CLI (sourced).
#
#   make_test_certs DIR [CLIENT_CN...]
#
# writes into DIR: ca.pem (a CA made for this run, kept in DIR with its key), server.pem and
# server-key.pem (CN localhost, subjectAltName DNS:localhost and IP:127.0.0.1, so clients that
# verify the host name accept 127.0.0.1), and client-<CN>.pem / client-<CN>-key.pem per
# CLIENT_CN (clientAuth), all signed by that CA. P-256 keys in PKCS#8, valid two days.
# Invariant: nothing outside DIR is read or written, and every file is new for the run, so
# no run trusts another run's CA.
make_test_certs() {
    local dir="$1" cn
    shift
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=tributary-compat-ca" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
    _sign_test_cert "$dir" server "localhost" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
    for cn in "$@"; do
        _sign_test_cert "$dir" "client-$cn" "$cn" "extendedKeyUsage=clientAuth"
    done
}

# _sign_test_cert DIR NAME CN EXTENSIONS: DIR/NAME.pem and DIR/NAME-key.pem signed by DIR/ca.pem.
_sign_test_cert() {
    local dir="$1" name="$2" cn="$3" extensions="$4"
    printf 'basicConstraints=critical,CA:FALSE\n%s\n' "$extensions" >"$dir/$name.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
        -keyout "$dir/$name-key.pem" -out "$dir/$name.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}
