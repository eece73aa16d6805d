//! Routes when several brokers serve one log (the cloud engine's membership): the one place
//! that says how RocketMQ's per-broker queue counts map onto partitions led by different
//! brokers. The README's cloud section points here.
//!
//! A RocketMQ client turns a route into message queues `(brokerName, queueId)`, `queueId` in
//! `0..count` for each QueueData: `writeQueueNums` of the writable ones (perm bit 2) into its
//! producers' list, `readQueueNums` of the readable ones (perm bit 4) into its consumers'
//! (Java's `topicRouteData2TopicPublishInfo` / `...SubscribeInfo`, the same in
//! rocketmq-client-rust and the Go client). A count cannot name "partitions 1, 4 and 6", so:
//!
//! - **Reads**: one QueueData under the shared name (`Settings::broker_name`), perm READ, with
//!   read and write counts equal to the topic's partitions: queue id = partition, as with one
//!   broker. Its BrokerData names one live broker, the *reader*: the rendezvous owner of
//!   [`READER_KEY`], so every name server names the same one and it changes only when that
//!   broker leaves. Any broker reads the whole log, so the consumers' pulls, offsets, queue
//!   locks (held in one broker's memory) and send-backs all go there, and a consumer's message
//!   queues keep their identity when the reader moves: offsets and rebalancing carry on.
//! - **Writes**: one QueueData per live broker that leads at least one of the topic's
//!   partitions, under `<broker_name>-<broker id>`, perm WRITE, both counts equal to
//!   how many partitions it leads: its queue `i` is the `i`-th partition it leads in ascending
//!   order ([`led_partitions`]); a send translates it back ([`send_partition`]). With a stale
//!   route (leadership moved since) the index wraps onto a partition the broker leads now, or,
//!   when it leads none of the topic, the send is refused with SERVICE_NOT_AVAILABLE and the
//!   client retries another broker. RocketMQ promises no partition to a producer that did not
//!   pick one; one that picks a queue (a selector, for ordered messages) keeps its order while
//!   leadership holds.
//!
//! Every live broker thus appears in the route of a topic it leads a partition of, and RocketMQ
//! clients heartbeat every broker of their routes, so each broker knows every consumer of the
//! group (GET_CONSUMER_LIST_BY_GROUP may go to any broker of the route).
//!
//! Without a cluster (the local engine) none of this applies: one broker, queue id = partition.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};
use tributary_api::{BrokerAddress, ClusterView, TopicPartition};

use crate::error::{RequestError, RequestResult};

/// The key whose rendezvous owner is the reader (hashed as a group key is).
pub const READER_KEY: &str = "%rocketmq-reader%";
/// Permission bits (RocketMQ's `PermName`).
const PERM_READ: i32 = 4;
const PERM_WRITE: i32 = 2;

/// The name of broker `id`'s write queues.
pub fn write_name(broker_name: &str, id: i32) -> String {
    format!("{broker_name}-{id}")
}

/// The partitions of `topic` (of `partitions`) that broker `id` leads, ascending: its write
/// queue `i` is the `i`-th of them.
pub fn led_partitions(
    cluster: &dyn ClusterView,
    topic: &str,
    partitions: u32,
    id: i32,
) -> Vec<u32> {
    (0..partitions)
        .filter(|partition| cluster.leader(&TopicPartition::new(topic, *partition)) == Some(id))
        .collect()
}

/// The partition a send to this broker's write queue `queue_id` lands in.
pub fn send_partition(
    cluster: &dyn ClusterView,
    topic: &str,
    partitions: u32,
    queue_id: i64,
) -> RequestResult<u32> {
    let led = led_partitions(cluster, topic, partitions, cluster.local_id());
    let count = i64::try_from(led.len()).unwrap_or(i64::MAX);
    if count == 0 {
        return Err(RequestError::NoLedQueue(topic.to_owned()));
    }
    let index = usize::try_from(queue_id.rem_euclid(count)).unwrap_or(0);
    Ok(led[index])
}

/// The live brokers with a RocketMQ listener, by id.
fn rocketmq_brokers(cluster: &dyn ClusterView) -> BTreeMap<i32, BrokerAddress> {
    cluster
        .live()
        .into_iter()
        .filter(|broker| broker.rocketmq_port.is_some())
        .map(|broker| (broker.id, broker))
        .collect()
}

fn address(broker: &BrokerAddress) -> String {
    let port = broker.rocketmq_port.unwrap_or_default();
    if broker.host.contains(':') {
        format!("[{}]:{port}", broker.host)
    } else {
        format!("{}:{port}", broker.host)
    }
}

fn broker_data(cluster_name: &str, name: &str, broker: &BrokerAddress) -> Value {
    json!({
        "brokerAddrs": {"0": address(broker)},
        "brokerName": name,
        "cluster": cluster_name,
        "enableActingMaster": false,
    })
}

/// The reader: the owner of [`READER_KEY`] when it serves RocketMQ, else (no lease, or a
/// broker without RocketMQ) this broker, else the lowest id.
fn reader(
    cluster: &dyn ClusterView,
    brokers: &BTreeMap<i32, BrokerAddress>,
) -> Option<BrokerAddress> {
    cluster
        .coordinator(READER_KEY)
        .and_then(|id| brokers.get(&id))
        .or_else(|| brokers.get(&cluster.local_id()))
        .or_else(|| brokers.values().next())
        .cloned()
}

/// The store host message ids name (`offset_message_id`): the reader's address, since pulls
/// and lookups by id go to the reader, so a message has one id whichever broker took its send
/// (a send through another broker would otherwise name that one, and the consumer would see
/// another id). `local` (the address the client reached) when this broker is the reader, or
/// the reader's host is a name rather than an address. The id changes only if the reader
/// moves between the send and the pull.
pub fn store_host(cluster: &dyn ClusterView, local: SocketAddr) -> SocketAddr {
    let brokers = rocketmq_brokers(cluster);
    match reader(cluster, &brokers) {
        Some(reader) if reader.id != cluster.local_id() => reader
            .host
            .parse::<IpAddr>()
            .ok()
            .zip(reader.rocketmq_port)
            .map_or(local, |(ip, port)| SocketAddr::new(ip, port)),
        _ => local,
    }
}

/// The route of `topic` (of `partitions`) as the name servers of a cluster answer it.
pub fn route(
    cluster: &dyn ClusterView,
    cluster_name: &str,
    broker_name: &str,
    topic: &str,
    partitions: u32,
) -> Value {
    let brokers = rocketmq_brokers(cluster);
    let mut broker_datas = Vec::new();
    let mut queue_datas = Vec::new();
    if let Some(reader) = reader(cluster, &brokers) {
        broker_datas.push(broker_data(cluster_name, broker_name, &reader));
        queue_datas.push(json!({
            "brokerName": broker_name,
            "perm": PERM_READ,
            "readQueueNums": partitions,
            "topicSysFlag": 0,
            "writeQueueNums": partitions,
        }));
    }
    let mut led: BTreeMap<i32, u32> = BTreeMap::new();
    for partition in 0..partitions {
        if let Some(leader) = cluster.leader(&TopicPartition::new(topic, partition)) {
            *led.entry(leader).or_default() += 1;
        }
    }
    for (id, count) in led {
        let Some(broker) = brokers.get(&id) else {
            continue;
        };
        let name = write_name(broker_name, id);
        broker_datas.push(broker_data(cluster_name, &name, broker));
        // Read count = write count: clients cap a default route's write count at its read
        // count (TBW102); perm WRITE keeps these queues out of consumers' lists.
        queue_datas.push(json!({
            "brokerName": name,
            "perm": PERM_WRITE,
            "readQueueNums": count,
            "topicSysFlag": 0,
            "writeQueueNums": count,
        }));
    }
    json!({
        "brokerDatas": broker_datas,
        "filterServerTable": {},
        "queueDatas": queue_datas,
    })
}

/// GET_BROKER_CLUSTER_INFO's body: every live broker under its write name, and the reader
/// under the shared name, all in one cluster.
pub fn cluster_info(cluster: &dyn ClusterView, cluster_name: &str, broker_name: &str) -> Value {
    let brokers = rocketmq_brokers(cluster);
    let mut table = serde_json::Map::new();
    if let Some(reader) = reader(cluster, &brokers) {
        table.insert(
            broker_name.to_owned(),
            broker_data(cluster_name, broker_name, &reader),
        );
    }
    for (id, broker) in &brokers {
        let name = write_name(broker_name, *id);
        table.insert(name.clone(), broker_data(cluster_name, &name, broker));
    }
    let names: Vec<&String> = table.keys().collect();
    let clusters = json!({ cluster_name: names });
    json!({"brokerAddrTable": table, "clusterAddrTable": clusters})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three brokers; partition p is led by broker `p % 3 + 1`, except partition 7, which has
    /// no leader.
    #[derive(Debug)]
    struct Three {
        local: i32,
    }

    impl ClusterView for Three {
        fn local_id(&self) -> i32 {
            self.local
        }
        fn live(&self) -> Vec<BrokerAddress> {
            (1..=3)
                .map(|id| BrokerAddress {
                    id,
                    host: "127.0.0.1".to_owned(),
                    port: 9000 + id as u16,
                    tls_port: None,
                    rocketmq_port: Some(10_900 + id as u16),
                })
                .collect()
        }
        fn leader(&self, partition: &TopicPartition) -> Option<i32> {
            (partition.partition != 7).then_some((partition.partition % 3) as i32 + 1)
        }
        fn coordinator(&self, _key: &str) -> Option<i32> {
            Some(2)
        }
        fn holds_lease(&self) -> bool {
            true
        }
    }

    #[test]
    fn write_queues_count_each_brokers_led_partitions_and_sends_map_back() {
        let route = route(&Three { local: 1 }, "C", "b", "t", 9);
        let queues = route["queueDatas"].as_array().expect("queues");
        // The reader first: every partition, read only, at broker 2.
        assert_eq!(queues[0]["brokerName"], "b");
        assert_eq!(queues[0]["perm"], PERM_READ);
        assert_eq!(queues[0]["readQueueNums"], 9);
        assert_eq!(
            route["brokerDatas"][0]["brokerAddrs"]["0"],
            "127.0.0.1:10902"
        );
        // Broker 1 leads 0, 3, 6; broker 2 leads 1, 4 (7 has no leader); broker 3 leads 2, 5, 8.
        let writes: Vec<(String, i64)> = queues[1..]
            .iter()
            .map(|q| {
                assert_eq!(q["perm"], PERM_WRITE);
                (
                    q["brokerName"].as_str().expect("name").to_owned(),
                    q["writeQueueNums"].as_i64().expect("count"),
                )
            })
            .collect();
        assert_eq!(
            writes,
            vec![
                ("b-1".to_owned(), 3),
                ("b-2".to_owned(), 2),
                ("b-3".to_owned(), 3)
            ]
        );
        let sent: Vec<u32> = (0..4)
            .map(|queue| send_partition(&Three { local: 2 }, "t", 9, queue).expect("led"))
            .collect();
        assert_eq!(sent, vec![1, 4, 1, 4], "broker 2's queues 0, 1 (wrapping)");
        let sent: Vec<u32> = (0..3)
            .map(|queue| send_partition(&Three { local: 3 }, "t", 9, queue).expect("led"))
            .collect();
        assert_eq!(sent, vec![2, 5, 8]);
    }

    #[test]
    fn a_broker_leading_nothing_of_the_topic_refuses_retriably() {
        // One partition, led by broker 1.
        let refused = send_partition(&Three { local: 2 }, "t", 1, 0).expect_err("leads none");
        assert_eq!(
            refused.response_code(),
            crate::error::code::SERVICE_NOT_AVAILABLE
        );
        let route = route(&Three { local: 2 }, "C", "b", "t", 1);
        assert_eq!(route["queueDatas"].as_array().expect("queues").len(), 2);
    }

    #[test]
    fn cluster_info_lists_every_broker_and_the_reader() {
        let info = cluster_info(&Three { local: 1 }, "C", "b");
        let names = info["clusterAddrTable"]["C"].as_array().expect("names");
        assert_eq!(names.len(), 4);
        assert_eq!(
            info["brokerAddrTable"]["b-3"]["brokerAddrs"]["0"],
            "127.0.0.1:10903"
        );
        assert_eq!(
            info["brokerAddrTable"]["b"]["brokerAddrs"]["0"],
            "127.0.0.1:10902"
        );
    }

    #[test]
    fn message_ids_name_the_reader_whichever_broker_took_the_send() {
        let reached = |port| SocketAddr::from(([127, 0, 0, 1], port));
        // Broker 2 is the reader (the coordinator of every key here).
        for local in [1, 3] {
            assert_eq!(
                store_host(&Three { local }, reached(10_900 + local as u16)),
                reached(10_902),
                "a send through broker {local} names the reader"
            );
        }
        assert_eq!(
            store_host(&Three { local: 2 }, reached(40_000)),
            reached(40_000),
            "the reader names the address its client reached"
        );
    }
}
