//! HTTPS on the HTTP listener (`http.tls`) and the SIGHUP reload of the TLS certificate, against
//! the real binary with certificates made here: `/health` answers over TLS, and after the files
//! are replaced and SIGHUP sent, a new connection is served the new certificate (a bad new file
//! keeps the one in use).

use crate::broker;
use crate::tls_support;

use std::time::Duration;

use broker::TestBroker;
use tls_support::Pki;

#[test]
fn health_answers_over_https() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-http")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "http-ca");
    let mut env = pki.env("none");
    env.push(("TRIBUTARY_HTTP_TLS".into(), "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut broker = TestBroker::start_with_env(&[], &env);
    let http = broker.http_addr();
    let status = tls_support::https_health(http, pki.client_config(None));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(tls_support::plaintext_is_refused(
        http,
        b"GET /health HTTP/1.1\r\n\r\n"
    ));
}

#[test]
fn sighup_serves_a_new_certificate_to_new_connections() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-reload")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "reload-ca");
    let mut env = pki.env("none");
    env.push(("TRIBUTARY_AMQP_TLS_PORT".into(), "0".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut broker = TestBroker::start_with_env(&[], &env);
    let amqps = broker.addr("amqps");
    let before = pki.server_der("server.pem");
    let first = tls_support::connect(amqps, pki.client_config(None)).expect("handshake");
    assert_eq!(tls_support::served_certificate(&first), before);

    // A broken key: the reload fails and the certificate in use stays.
    std::fs::write(dir.path().join("server-key.pem"), "not a key").unwrap();
    broker.signal("HUP");
    broker.wait_for_line(&["cannot reload TLS"], Duration::from_secs(10));
    let kept = tls_support::connect(amqps, pki.client_config(None)).expect("handshake");
    assert_eq!(tls_support::served_certificate(&kept), before);

    pki.write_server("server.pem", "server-key.pem");
    let after = pki.server_der("server.pem");
    assert_ne!(after, before);
    broker.signal("HUP");
    broker.wait_for_line(
        &["TLS certificate, key and CAs reloaded"],
        Duration::from_secs(10),
    );
    let second = tls_support::connect(amqps, pki.client_config(None)).expect("handshake");
    assert_eq!(tls_support::served_certificate(&second), after);
    // The connection opened before the reload keeps its session.
    assert_eq!(tls_support::served_certificate(&first), before);
}
