//! Kafka ACLs on the TRANSACTIONAL_ID resource (`kafka.authorizer`), at the byte level:
//! FindCoordinator for a transaction (key type 1, single-key and batched forms) needs DESCRIBE
//! on the id and InitProducerId with a transactional id WRITE on it, else
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53); a PREFIXED binding covers the ids it prefixes.
//! An allowed request is answered as without the authorizer (this broker coordinates the
//! transaction; InitProducerId hands out a producer id); the refusal is also in the
//! authorizer's log line. DescribeTransactions answers the ids without DESCRIBE refused (53)
//! and ListTransactions leaves them out, as Kafka does.

use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::acl::{acl, add_user, call, login};
use crate::broker::TestBroker;

const TRANSACTIONAL_ID_DENIED: i16 = 53;
const GROUP_DENIED: i16 = 30;
const GROUP: i8 = 3;
const READ: i8 = 3;
const TRANSACTIONAL_ID: i8 = 5;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const WRITE: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const REFUSED_LINE: &str = "Kafka transactional id refused by the ACL";

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// FindCoordinator v3 for transactional id `id`: the error code.
fn find_one(stream: &mut TcpStream, id: &str) -> i16 {
    let request = FindCoordinatorRequest::default()
        .with_key(text(id))
        .with_key_type(1);
    let answer: FindCoordinatorResponse = call(stream, ApiKey::FindCoordinator, 3, &request);
    answer.error_code
}

/// FindCoordinator v4 for transactional `ids`: each key's error code, in the order asked.
fn find_many(stream: &mut TcpStream, ids: &[&str]) -> Vec<i16> {
    find_many_of(stream, 1, ids)
}

/// FindCoordinator v4 for keys `ids` of `key_type`: each key's error code, in the order asked.
fn find_many_of(stream: &mut TcpStream, key_type: i8, ids: &[&str]) -> Vec<i16> {
    let request = FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(ids.iter().map(|id| text(id)).collect());
    let answer: FindCoordinatorResponse = call(stream, ApiKey::FindCoordinator, 4, &request);
    assert_eq!(answer.coordinators.len(), ids.len(), "{answer:?}");
    ids.iter()
        .map(|id| {
            answer
                .coordinators
                .iter()
                .find(|c| c.key.as_str() == *id)
                .unwrap_or_else(|| panic!("no answer for {id}: {answer:?}"))
                .error_code
        })
        .collect()
}

fn init_transactional(stream: &mut TcpStream, id: &str) -> InitProducerIdResponse {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(text(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    call(stream, ApiKey::InitProducerId, 4, &request)
}

/// `admin` grants alice WRITE (so DESCRIBE) on ids prefixed `tx-alice`, denies her all of
/// `tx-alice-locked` and grants her READ (so DESCRIBE) on groups prefixed `g-alice`; `bob` has
/// no ACL.
fn granted_broker() -> TestBroker {
    let mut broker = TestBroker::start_prepared(&["--config", "tributary.toml"], |root| {
        std::fs::write(
            root.join("tributary.toml"),
            "[kafka]\nsasl_enabled = true\nauthorizer = true\nsuper_users = [\"admin\"]\n",
        )
        .expect("config");
        for user in ["admin", "alice", "bob"] {
            add_user(root, user, &format!("{user}-secret"));
        }
    });
    let kafka = broker.addr("kafka");
    let mut admin = login(kafka, "admin", "admin-secret");
    let grants = vec![
        acl(TRANSACTIONAL_ID, PREFIXED, "tx-alice", WRITE, ALLOW),
        acl(TRANSACTIONAL_ID, LITERAL, "tx-alice-locked", ALL, DENY),
        acl(GROUP, PREFIXED, "g-alice", READ, ALLOW),
    ];
    let granted: CreateAclsResponse = call(
        &mut admin,
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(grants),
    );
    assert!(
        granted.results.iter().all(|r| r.error_code == 0),
        "{granted:?}"
    );
    broker
}

#[test]
fn finding_a_transaction_coordinator_needs_describe_on_the_id() {
    let mut broker = granted_broker();
    let kafka = broker.addr("kafka");
    let mut alice = login(kafka, "alice", "alice-secret");
    let mut bob = login(kafka, "bob", "bob-secret");
    // The prefixed ALLOW covers tx-alice-1; the answer is then what it is without ACLs.
    assert_eq!(find_one(&mut alice, "tx-alice-1"), 0);
    assert_eq!(find_one(&mut alice, "tx-bob"), TRANSACTIONAL_ID_DENIED);
    assert_eq!(
        find_one(&mut alice, "tx-alice-locked"),
        TRANSACTIONAL_ID_DENIED,
        "deny wins"
    );
    assert_eq!(find_one(&mut bob, "tx-alice-1"), TRANSACTIONAL_ID_DENIED);
    // Batched: each key is answered for itself.
    assert_eq!(
        find_many(&mut alice, &["tx-alice-1", "tx-bob", "tx-alice-2"]),
        vec![0, TRANSACTIONAL_ID_DENIED, 0]
    );
    assert_eq!(
        find_many(&mut bob, &["tx-alice-1"]),
        vec![TRANSACTIONAL_ID_DENIED]
    );
}

#[test]
fn a_transactional_init_producer_id_needs_write_on_the_id() {
    let mut broker = granted_broker();
    let kafka = broker.addr("kafka");
    let mut alice = login(kafka, "alice", "alice-secret");
    let mut bob = login(kafka, "bob", "bob-secret");
    // Allowed: served, with a producer id at epoch 0.
    let allowed = init_transactional(&mut alice, "tx-alice-1");
    assert_eq!(allowed.error_code, 0);
    assert!(allowed.producer_id.0 >= 0, "{allowed:?}");
    assert_eq!(allowed.producer_epoch, 0);
    // Refused by the ACL: the same answer, and the authorizer says so in the log.
    for (who, id, principal) in [
        ("bob", "tx-alice-1", "User:bob"),
        ("alice", "tx-alice-locked", "User:alice"),
        ("alice", "tx-other", "User:alice"),
    ] {
        let stream = if who == "bob" { &mut bob } else { &mut alice };
        let refused = init_transactional(stream, id);
        assert_eq!(refused.error_code, TRANSACTIONAL_ID_DENIED, "{id}");
        assert_eq!(refused.producer_id, ProducerId(-1));
        let line = broker.wait_for_line(
            &[REFUSED_LINE, &format!("transactional_id=\"{id}\"")],
            Duration::from_secs(10),
        );
        assert!(line.contains(principal), "{line}");
    }
    // alice's allowed request (made before the refusals) was not refused.
    let alice_refused = broker.lines_seen().iter().any(|line| {
        line.contains(REFUSED_LINE) && line.contains("User:alice") && line.contains("tx-alice-1")
    });
    assert!(!alice_refused, "{:#?}", broker.lines_seen());
}

#[test]
fn a_batched_find_coordinator_refuses_only_the_groups_denied() {
    let mut broker = granted_broker();
    let kafka = broker.addr("kafka");
    let mut alice = login(kafka, "alice", "alice-secret");
    // Each key answered on its own, as Kafka does: the allowed group finds its coordinator.
    assert_eq!(
        find_many_of(&mut alice, 0, &["g-alice-1", "g-bob", "g-alice-2"]),
        vec![0, GROUP_DENIED, 0]
    );
    let mut bob = login(kafka, "bob", "bob-secret");
    assert_eq!(
        find_many_of(&mut bob, 0, &["g-alice-1"]),
        vec![GROUP_DENIED]
    );
}

#[test]
fn transactions_are_listed_and_described_only_with_describe_on_the_id() {
    use super::txn_admin::{describe, list, listed};

    let mut broker = granted_broker();
    let kafka = broker.addr("kafka");
    let mut admin = login(kafka, "admin", "admin-secret");
    for id in ["tx-alice-1", "tx-alice-locked", "tx-bob"] {
        assert_eq!(init_transactional(&mut admin, id).error_code, 0, "{id}");
    }
    let mut alice = login(kafka, "alice", "alice-secret");
    let codes: Vec<i16> = describe(&mut alice, &["tx-alice-1", "tx-bob", "tx-alice-locked"])
        .iter()
        .map(|state| state.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![0, TRANSACTIONAL_ID_DENIED, TRANSACTIONAL_ID_DENIED]
    );
    let seen = |stream: &mut TcpStream| -> Vec<String> {
        listed(&list(stream, 1, &[], &[], -1))
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    assert_eq!(seen(&mut alice), ["tx-alice-1"]);
    assert_eq!(
        seen(&mut admin),
        ["tx-alice-1", "tx-alice-locked", "tx-bob"]
    );
    let mut bob = login(kafka, "bob", "bob-secret");
    assert!(seen(&mut bob).is_empty());
    assert_eq!(
        describe(&mut bob, &["tx-alice-1"])[0].error_code,
        TRANSACTIONAL_ID_DENIED
    );
}
