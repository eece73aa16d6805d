//! Name server requests: GET_ROUTEINFO_BY_TOPIC, GET_BROKER_CLUSTER_INFO, and
//! UPDATE_AND_CREATE_TOPIC (an admin request both listeners accept).
//!
//! Routes are compact standard JSON with quoted broker-id keys (the Go client splits the text on
//! `,` and `:`, so no spaces). Alone, this process is the only broker: id 0 (master), perm 6
//! (read and write). In a cluster, routes and cluster info come from [`crate::routes`].
//! `TBW102` and the cluster name resolve without creating a topic; any other topic is created
//! on lookup when auto-creation is on, `%RETRY%`/`%DLQ%` topics with one queue.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};
use tributary_api::EngineError;

use super::{ensure_topic, optional, queues_for, required};
use crate::Shared;
use crate::codec::RemotingCommand;
use crate::connection::Connection;
use crate::error::{RequestError, RequestResult, code};

/// The topic producers fall back to for routes of topics that do not exist yet.
const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
/// Read and write permission bits.
const PERM_READ_WRITE: i32 = 6;

/// The broker address clients should dial, as `host:port`.
fn broker_address(shared: &Shared, connection: &Connection) -> String {
    let port = shared
        .broker_addr
        .get()
        .map_or(shared.settings.broker_port, |addr| addr.port());
    if let Some(host) = &shared.settings.advertised_host {
        return format!("{host}:{port}");
    }
    match connection.local.ip() {
        ip if ip.is_unspecified() => format!("{}:{port}", Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{port}"),
            None => format!("[{v6}]:{port}"),
        },
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}

fn broker_data(shared: &Shared, connection: &Connection) -> Value {
    json!({
        "brokerAddrs": {"0": broker_address(shared, connection)},
        "brokerName": shared.settings.broker_name,
        "cluster": shared.settings.cluster_name,
        "enableActingMaster": false,
    })
}

pub(super) async fn route(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
    may_create: bool,
) -> RequestResult<RemotingCommand> {
    let topic = required(request, "topic")?;
    let queues = if topic == AUTO_CREATE_TOPIC_KEY || topic == shared.settings.cluster_name {
        shared.settings.default_queue_nums
    } else {
        // The ACL lets unsigned route lookups through, but never lets them create a topic.
        let found = if may_create {
            ensure_topic(shared, topic, None).await
        } else {
            shared
                .engine
                .topics
                .describe_topic(topic)
                .map_err(|err| match err {
                    EngineError::UnknownTopic(_) => RequestError::TopicNotExist(topic.to_owned()),
                    other => other.into(),
                })
        };
        match found {
            Ok(description) => description.partitions,
            Err(err) if err.response_code() == code::TOPIC_NOT_EXIST => {
                return Ok(RemotingCommand::response_to(request, code::TOPIC_NOT_EXIST)
                    .with_remark(format!(
                        "No topic route info in name server for the topic: {topic}"
                    )));
            }
            Err(err) => return Err(err),
        }
    };
    if let Some(cluster) = shared.cluster.get() {
        let route = crate::routes::route(
            cluster.as_ref(),
            &shared.settings.cluster_name,
            &shared.settings.broker_name,
            topic,
            queues,
        );
        return Ok(RemotingCommand::response_to(request, code::SUCCESS)
            .with_body(serde_json::to_vec(&route)?));
    }
    let route = json!({
        "brokerDatas": [broker_data(shared, connection)],
        "filterServerTable": {},
        "queueDatas": [{
            "brokerName": shared.settings.broker_name,
            "perm": PERM_READ_WRITE,
            "readQueueNums": queues,
            "topicSysFlag": 0,
            "writeQueueNums": queues,
        }],
    });
    Ok(RemotingCommand::response_to(request, code::SUCCESS).with_body(serde_json::to_vec(&route)?))
}

pub(super) fn cluster_info(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    if let Some(cluster) = shared.cluster.get() {
        let info = crate::routes::cluster_info(
            cluster.as_ref(),
            &shared.settings.cluster_name,
            &shared.settings.broker_name,
        );
        return Ok(RemotingCommand::response_to(request, code::SUCCESS)
            .with_body(serde_json::to_vec(&info)?));
    }
    let broker_name = shared.settings.broker_name.clone();
    let mut brokers = serde_json::Map::new();
    brokers.insert(broker_name.clone(), broker_data(shared, connection));
    let mut clusters = serde_json::Map::new();
    clusters.insert(shared.settings.cluster_name.clone(), json!([broker_name]));
    let info = json!({"brokerAddrTable": brokers, "clusterAddrTable": clusters});
    Ok(RemotingCommand::response_to(request, code::SUCCESS).with_body(serde_json::to_vec(&info)?))
}

pub(super) async fn create_topic(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let topic = required(request, "topic")?;
    let read: Option<u32> = optional(request, "readQueueNums")?;
    let write: Option<u32> = optional(request, "writeQueueNums")?;
    let wanted = queues_for(shared, topic, read.max(write));
    match shared.engine.topics.describe_topic(topic) {
        Ok(description) if description.partitions < wanted => {
            shared
                .engine
                .topics
                .create_partitions(topic, wanted)
                .await?;
        }
        Ok(_) => {}
        Err(EngineError::UnknownTopic(_)) => {
            match shared
                .engine
                .topics
                .create_topic(topic, wanted, Default::default())
                .await
            {
                Ok(_) | Err(EngineError::TopicExists(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Err(err) => return Err(err.into()),
    }
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}
