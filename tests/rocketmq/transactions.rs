//! Transactional messages with a real RocketMQ remoting client (`rocketmq-client-rust` 1.0.0,
//! `TransactionMQProducer`) against the real `tributary` binary, with a 1 s check timeout and
//! interval from the configuration so check-backs come in seconds: a committed transaction is
//! consumed, a rolled-back one never is, one left UNKNOW is committed by the check-back, and a
//! half message pending across SIGKILL is still resolved by a check-back after the restart.

use crate::broker;

use crate::rocketmq;
use crate::rocketmq_tx;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use broker::TestBroker;
use parking_lot::Mutex;
use rocketmq::{Client, consumer_with, runtime, wait_for};
use rocketmq_client_rust::LocalTransactionState;
use rocketmq_tx::{Listener, Sink, bodies, message, transaction_producer};

fn config_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("config file");
    writeln!(
        file,
        "[rocketmq]\ntransaction_timeout_ms = 1000\ntransaction_check_interval_ms = 1000\ntransaction_check_max = 60"
    )
    .expect("write config");
    file
}

fn start_broker(config: &tempfile::NamedTempFile) -> TestBroker {
    TestBroker::start_with(&["--config", config.path().to_str().expect("utf-8 path")])
}

#[test]
fn commits_are_consumed_rollbacks_never_and_unknown_ones_after_a_check_back() {
    let config = config_file();
    let mut broker = start_broker(&config);
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "TxRmq";
    runtime().block_on(async {
        let client = Client::new("tx").expect("client");
        let consumed = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(Arc::clone(&consumed));
        let mut consumer = consumer_with(&client, &namesrv, "CID-tx", topic, "*", sink).await;
        let checks = Arc::new(Mutex::new(Vec::new()));
        let listener = Listener {
            on_check: "commit",
            checks: Arc::clone(&checks),
        };
        let mut producer = transaction_producer(&client, &namesrv, "PID-tx", topic, listener).await;
        for (decision, body, expected) in [
            (
                "commit",
                &b"committed \xFF"[..],
                LocalTransactionState::CommitMessage,
            ),
            (
                "rollback",
                b"rolled back",
                LocalTransactionState::RollbackMessage,
            ),
            ("unknown", b"checked back", LocalTransactionState::Unknown),
        ] {
            let result = producer
                .send_message_in_transaction::<(), _>(message(topic, decision, body), None)
                .await
                .expect("transactional send");
            assert_eq!(result.local_transaction_state, Some(expected));
            let send = result.send_result.expect("a send result");
            assert!(
                send.offset_msg_id
                    .as_deref()
                    .is_some_and(|id| id.len() == 32),
                "offset message id {:?}",
                send.offset_msg_id
            );
        }

        wait_for("the committed message", Duration::from_secs(60), || {
            bodies(&consumed).contains(&b"committed \xFF".to_vec())
        })
        .await;
        wait_for("the checked-back message", Duration::from_secs(60), || {
            bodies(&consumed).contains(&b"checked back".to_vec())
        })
        .await;
        // Long enough for a wrongly committed rollback to show up, and for further checks.
        tokio::time::sleep(Duration::from_secs(3)).await;

        let mut seen = bodies(&consumed);
        seen.sort();
        let consumed = consumed.lock().clone();
        assert_eq!(
            seen,
            [b"checked back".to_vec(), b"committed \xFF".to_vec()],
            "each commit exactly once, the rollback never"
        );
        for (body, _, tran_msg, group) in &consumed {
            assert_eq!(tran_msg, &None, "TRAN_MSG is removed on commit ({body:?})");
            assert_eq!(group.as_deref(), Some("PID-tx"), "PGROUP is kept");
        }
        let checks = checks.lock().clone();
        // Usually one check; a loaded machine may send a second before the answer lands.
        assert!(
            !checks.is_empty() && checks.iter().all(|(d, _)| d.as_deref() == Some("unknown")),
            "only the unresolved transaction is checked: {checks:?}"
        );
        let (_, arrived, ..) = consumed
            .iter()
            .find(|(body, ..)| body == b"checked back")
            .expect("checked-back message");
        assert!(*arrived >= checks[0].1, "visible only after the check-back");

        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}

#[test]
fn a_pending_half_survives_sigkill_and_a_check_back_commits_it_after_restart() {
    let config = config_file();
    let mut broker = start_broker(&config);
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "TxRestartRmq";
    let group = "PID-tx-restart";
    let rt = runtime();
    let first_checks = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let client = Client::new("tx-before").expect("client");
        let listener = Listener {
            on_check: "unknown",
            checks: Arc::clone(&first_checks),
        };
        let mut producer = transaction_producer(&client, &namesrv, group, topic, listener).await;
        let result = producer
            .send_message_in_transaction::<(), _>(message(topic, "unknown", b"survivor"), None)
            .await
            .expect("transactional send");
        assert_eq!(
            result.local_transaction_state,
            Some(LocalTransactionState::Unknown)
        );
        wait_for("a first check-back", Duration::from_secs(60), || {
            !first_checks.lock().is_empty()
        })
        .await;
        producer.shutdown().await;
        client.shutdown().await;
    });

    broker.kill_and_restart();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    rt.block_on(async {
        let client = Client::new("tx-after").expect("client");
        let consumed = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(Arc::clone(&consumed));
        let mut consumer =
            consumer_with(&client, &namesrv, "CID-tx-restart", topic, "*", sink).await;
        let checks = Arc::new(Mutex::new(Vec::new()));
        let listener = Listener {
            on_check: "commit",
            checks: Arc::clone(&checks),
        };
        let mut producer = transaction_producer(&client, &namesrv, group, topic, listener).await;
        wait_for(
            "the half committed after the restart",
            Duration::from_secs(90),
            || bodies(&consumed).contains(&b"survivor".to_vec()),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(bodies(&consumed), [b"survivor".to_vec()], "committed once");
        assert!(
            checks
                .lock()
                .iter()
                .any(|(decision, _)| decision.as_deref() == Some("unknown")),
            "resolved by a check-back of the new producer"
        );
        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}
