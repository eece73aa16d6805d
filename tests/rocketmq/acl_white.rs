//! RocketMQ ACL address whitelists against the real binary: the global list
//! (`rocketmq.acl_global_white_addresses`, RocketMQ's `globalWhiteRemoteAddresses`) admits an
//! unsigned request from a matching peer and only from one; an account's white address
//! (`tributary user add --rocketmq-white-address`, RocketMQ's `whiteRemoteAddress`) stands in
//! for that account's signature, not for its permissions; bad patterns are refused by name.
//! Every request comes from 127.0.0.1.

use crate::broker;

use broker::{TestBroker, cli_output, run_cli};
use serde_json::json;

use super::acl::{assert_refused, call, connect, create_fields, send_fields, signed};

const CONFIG_FILE: &str = "tributary.toml";

/// A broker with the ACL on, `global` as the global white list, and users `admin`
/// (administrator, a secret), `carol` (no secret, white address `127.0.0.*`, topics
/// `carol.*`) and `dave` (a secret, white address `10.*.*.*`, everything).
fn white_broker(global: &str) -> TestBroker {
    let global = global.to_owned();
    TestBroker::start_prepared(&["--config", CONFIG_FILE], move |root| {
        let config =
            format!("[rocketmq]\nacl_enabled = true\nacl_global_white_addresses = \"{global}\"\n");
        std::fs::write(root.join(CONFIG_FILE), config).expect("config");
        let add = |name: &str, extra: &[&str]| {
            let mut args = vec!["user", "add", name, "--password-stdin"];
            args.extend_from_slice(extra);
            run_cli(root, &args, &format!("{name}-secret\n"));
        };
        add("admin", &["--rocketmq-secret", "--tags", "administrator"]);
        add("carol", &["--rocketmq-white-address", "127.0.0.*"]);
        add(
            "dave",
            &["--rocketmq-secret", "--rocketmq-white-address", "10.*.*.*"],
        );
        for (user, pattern) in [("admin", ".*"), ("carol", "^carol\\."), ("dave", ".*")] {
            run_cli(
                root,
                &["permissions", "set", "/", user, pattern, pattern, pattern],
                "",
            );
        }
    })
}

/// Creates `topic` as the administrator.
fn create(conn: &mut std::net::TcpStream, topic: &str) {
    let created = call(
        conn,
        17,
        signed("admin", "admin-secret", &create_fields(topic), b""),
        b"",
    );
    assert_eq!(created.code(), 0, "{}", created.header);
}

#[test]
fn the_global_list_admits_unsigned_requests_from_matching_peers_only() {
    let mut listed = white_broker("192.168.1.{1,2}, 127.0.0.*");
    let mut conn = connect(listed.addr("rocketmq-broker"));
    create(&mut conn, "orders");
    let sent = call(&mut conn, 10, send_fields("orders"), b"payload");
    assert_eq!(
        sent.code(),
        0,
        "unsigned send from 127.0.0.1: {}",
        sent.header
    );
    // As in RocketMQ, a listed peer passes the ACL entirely, topic creation included.
    let mut ns = connect(listed.addr("rocketmq-namesrv"));
    let grown = call(&mut ns, 17, create_fields("orders"), b"");
    assert_eq!(grown.code(), 0, "{}", grown.header);

    let mut unlisted = white_broker("10.*.*.*");
    let mut conn = connect(unlisted.addr("rocketmq-broker"));
    create(&mut conn, "orders");
    let refused = call(&mut conn, 10, send_fields("orders"), b"payload");
    assert_refused(&refused, "unsigned send, peer not listed", "No accessKey");
    let mut ns = connect(unlisted.addr("rocketmq-namesrv"));
    let grow = call(&mut ns, 17, create_fields("orders"), b"");
    assert_refused(&grow, "unsigned topic creation", "No accessKey");

    // `*` is allowed, as an explicit choice, and logged as one.
    let mut everyone = white_broker("*");
    everyone.wait_for_line(
        &["admits every address"],
        std::time::Duration::from_secs(10),
    );
}

#[test]
fn an_account_white_address_replaces_its_signature_not_its_permissions() {
    let mut broker = white_broker("");
    let mut conn = connect(broker.addr("rocketmq-broker"));
    create(&mut conn, "carol.orders");
    create(&mut conn, "other");
    let as_user = |user: &str, fields: serde_json::Value| {
        let mut fields = fields;
        fields["AccessKey"] = json!(user);
        fields
    };

    // carol from 127.0.0.1 (her white address): no signature needed, a wrong one is ignored.
    let unsigned = call(
        &mut conn,
        10,
        as_user("carol", send_fields("carol.orders")),
        b"p",
    );
    assert_eq!(unsigned.code(), 0, "{}", unsigned.header);
    let mut wrong = as_user("carol", send_fields("carol.orders"));
    wrong["Signature"] = json!("bm90IGEgc2lnbmF0dXJl");
    let wrong = call(&mut conn, 10, wrong, b"p");
    assert_eq!(wrong.code(), 0, "{}", wrong.header);
    // ... but only where her permissions allow.
    let elsewhere = call(&mut conn, 10, as_user("carol", send_fields("other")), b"p");
    assert_refused(&elsewhere, "carol outside her topics", "lacks `write`");

    // dave's white address does not match 127.0.0.1: he must sign, and signed he is served.
    let unsigned = call(&mut conn, 10, as_user("dave", send_fields("other")), b"p");
    assert_refused(&unsigned, "dave unsigned", "No accessKey");
    let mut forged = as_user("dave", send_fields("other"));
    forged["Signature"] = json!("bm90IGEgc2lnbmF0dXJl");
    let forged = call(&mut conn, 10, forged, b"p");
    assert_refused(&forged, "dave forged", "Check signature failed");
    let fields = send_fields("other");
    let sent = call(
        &mut conn,
        10,
        signed("dave", "dave-secret", &fields, b"p"),
        b"p",
    );
    assert_eq!(sent.code(), 0, "{}", sent.header);
    // Without an access key, no account's white address applies.
    let anonymous = call(&mut conn, 10, send_fields("carol.orders"), b"p");
    assert_refused(&anonymous, "no access key", "No accessKey");
}

#[test]
fn bad_patterns_are_refused_naming_them() {
    let root = tempfile::tempdir().expect("temp dir");
    for pattern in ["192.168.1-3.7", "10.*.*", "localhost"] {
        let output = cli_output(
            root.path(),
            &["config"],
            &[("TRIBUTARY_ROCKETMQ_ACL_GLOBAL_WHITE_ADDRESSES", pattern)],
            "",
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{pattern} accepted");
        assert!(
            stderr.contains(pattern) && stderr.contains("rocketmq.acl_global_white_addresses"),
            "{pattern}: {stderr}"
        );

        let output = cli_output(
            root.path(),
            &[
                "user",
                "add",
                "erin",
                "--password-stdin",
                "--rocketmq-white-address",
                pattern,
            ],
            &[],
            "pw\n",
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{pattern} accepted for a user");
        assert!(stderr.contains(pattern), "{pattern}: {stderr}");
    }
}
