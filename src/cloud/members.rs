//! Broker membership by leases in PostgreSQL, and partition leadership by rendezvous hashing
//! over the live brokers.
//!
//! Each broker upserts its row in `brokers` (id, advertised host, Kafka and RocketMQ ports,
//! internal RPC port, lease expiry) every `cluster.lease_renew_ms` and reads back the brokers
//! whose lease has not expired (and where their internal RPC listens, for [`super::rpc`]).
//! Expiry is judged by PostgreSQL's clock (`now()`), so brokers' clocks need not agree.
//! Leadership of a partition (and the coordinator of a group) is the live broker with the highest
//! [`rendezvous`] score for it: every broker with the same view picks the same leader, and a
//! broker joining or leaving moves only the partitions it wins or held.
//!
//! Invariants:
//! - this broker counts itself a holder of its lease only until `renewal start + lease
//!   duration` by its own monotonic clock, measured from BEFORE the renewal was sent, so it
//!   stops counting itself live no later than PostgreSQL stops counting it;
//! - without a lease it leads nothing (every partition answers "not leader") and coordinates
//!   nothing, but still lists itself and the brokers of its last view, so clients keep a broker
//!   to ask for metadata; the flush's fencing update still refuses a stale writer if views
//!   disagree for a moment;
//! - the hash is fixed (FNV-1a with a final mix), not `std`'s, so brokers built by different
//!   compilers agree.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::sync::Notify;
use tributary_api::{BrokerAddress, TopicPartition};

use super::error::{CloudError, CloudResult};
use super::pool::PgPool;
use super::stats::Stats;

/// What membership is configured with.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    pub broker_id: u32,
    /// Advertised host clients of other brokers are sent to.
    pub host: String,
    pub lease: Duration,
    pub renew: Duration,
}

/// What this broker last learnt from PostgreSQL.
#[derive(Debug, Default, Clone)]
struct View {
    /// Live brokers, by id.
    live: Vec<BrokerAddress>,
    /// Host and internal RPC port of each live broker that advertises one.
    internal: HashMap<i32, (String, u16)>,
    /// This broker's lease holds until then (by its own clock).
    lease_until: Option<Instant>,
}

/// The membership of one broker; cheap to share.
#[derive(Debug)]
pub struct Membership {
    settings: MemberSettings,
    pool: PgPool,
    stats: Arc<Stats>,
    view: RwLock<View>,
    /// The Kafka listener's port, once bound (0 before).
    kafka_port: AtomicU16,
    /// The Kafka TLS listener's port, once bound (0 before, and without one).
    kafka_tls_port: AtomicU16,
    /// The internal RPC listener's port (`cloud::rpc`), once bound (0 before).
    internal_port: AtomicU16,
    /// The RocketMQ broker listener's port, once bound (0 before, and without one).
    rocketmq_port: AtomicU16,
    /// Asks for a renewal now (a listener's port became known).
    renew_now: Notify,
}

/// The rendezvous score of `broker` for `key`: FNV-1a over the key and the id, then a
/// splitmix64 finaliser so nearby ids do not give nearby scores.
pub fn rendezvous(key: &[u8], broker: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.iter().chain(broker.to_be_bytes().iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

fn partition_key(tp: &TopicPartition) -> Vec<u8> {
    let mut key = Vec::with_capacity(tp.topic.len() + 5);
    key.extend_from_slice(b"p");
    key.extend_from_slice(tp.topic.as_bytes());
    key.extend_from_slice(&tp.partition.to_be_bytes());
    key
}

impl Membership {
    pub fn new(settings: MemberSettings, pool: PgPool, stats: Arc<Stats>) -> Self {
        Self {
            settings,
            pool,
            stats,
            view: RwLock::default(),
            kafka_port: AtomicU16::new(0),
            kafka_tls_port: AtomicU16::new(0),
            internal_port: AtomicU16::new(0),
            rocketmq_port: AtomicU16::new(0),
            renew_now: Notify::new(),
        }
    }

    /// Records the Kafka listener's bound port and advertises it at once.
    pub fn set_kafka_port(&self, port: u16) {
        self.kafka_port.store(port, Ordering::Release);
        self.renew_now.notify_one();
    }

    /// Records the Kafka TLS listener's bound port and advertises it at once.
    pub fn set_kafka_tls_port(&self, port: u16) {
        self.kafka_tls_port.store(port, Ordering::Release);
        self.renew_now.notify_one();
    }

    /// Records the internal RPC listener's bound port (advertised from the next renewal on,
    /// the first of which runs before anything is served).
    pub fn set_internal_port(&self, port: u16) {
        self.internal_port.store(port, Ordering::Release);
    }

    /// Where broker `id` takes internal RPC calls, in the last view.
    pub fn internal_address(&self, id: i32) -> Option<(String, u16)> {
        self.view.read().internal.get(&id).cloned()
    }

    /// Records the RocketMQ broker listener's bound port and advertises it at once.
    pub fn set_rocketmq_port(&self, port: u16) {
        self.rocketmq_port.store(port, Ordering::Release);
        self.renew_now.notify_one();
    }

    fn own_tls_port(&self) -> Option<u16> {
        Some(self.kafka_tls_port.load(Ordering::Acquire)).filter(|port| *port != 0)
    }

    fn own_rocketmq_port(&self) -> Option<u16> {
        Some(self.rocketmq_port.load(Ordering::Acquire)).filter(|port| *port != 0)
    }

    /// Returns at the next renewal time, or earlier when a listener's port became known.
    pub async fn wait_renewal(&self) {
        tokio::select! {
            () = tokio::time::sleep(self.settings.renew) => {}
            () = self.renew_now.notified() => {}
        }
    }

    pub fn broker_id(&self) -> u32 {
        self.settings.broker_id
    }

    /// Upserts this broker's lease and reads the live brokers back.
    pub async fn renew(&self) -> CloudResult<()> {
        let started = Instant::now();
        let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO brokers
                     (broker_id, host, kafka_port, lease_expires, kafka_tls_port, rocketmq_port,
                      internal_port)
                 VALUES ($1, $2, $3, now() + $4::float8 * interval '1 millisecond', $5, $6, $7)
                 ON CONFLICT (broker_id) DO UPDATE
                 SET host = EXCLUDED.host, kafka_port = EXCLUDED.kafka_port,
                     lease_expires = EXCLUDED.lease_expires,
                     kafka_tls_port = EXCLUDED.kafka_tls_port,
                     rocketmq_port = EXCLUDED.rocketmq_port,
                     internal_port = EXCLUDED.internal_port",
                &[
                    &i64::from(self.settings.broker_id),
                    &self.settings.host,
                    &i32::from(self.kafka_port.load(Ordering::Acquire)),
                    &(lease_ms as f64),
                    &self.own_tls_port().map(i32::from),
                    &self.own_rocketmq_port().map(i32::from),
                    &Some(i32::from(self.internal_port.load(Ordering::Acquire)))
                        .filter(|port| *port != 0),
                ],
            )
            .await
            .map_err(CloudError::pg("renewing the broker lease"))?;
        let rows = client
            .query(
                "SELECT broker_id, host, kafka_port, kafka_tls_port, rocketmq_port, internal_port
                 FROM brokers
                 WHERE lease_expires > now() ORDER BY broker_id",
                &[],
            )
            .await
            .map_err(CloudError::pg("reading live brokers"))?;
        let live: Vec<BrokerAddress> = rows
            .iter()
            .map(|row| BrokerAddress {
                id: row.get::<_, i64>(0) as i32,
                host: row.get(1),
                port: row.get::<_, i32>(2) as u16,
                tls_port: row.get::<_, Option<i32>>(3).map(|port| port as u16),
                rocketmq_port: row.get::<_, Option<i32>>(4).map(|port| port as u16),
            })
            .collect();
        let internal: HashMap<i32, (String, u16)> = rows
            .iter()
            .filter_map(|row| {
                let port = row.get::<_, Option<i32>>(5)?;
                Some((row.get::<_, i64>(0) as i32, (row.get(1), port as u16)))
            })
            .collect();
        self.stats.lease_renewals.inc();
        let mut view = self.view.write();
        view.internal = internal;
        if view.live != live {
            tracing::info!(
                live = ?live.iter().map(|b| b.id).collect::<Vec<_>>(),
                "cluster membership changed"
            );
        }
        view.live = live;
        view.lease_until = Some(started + self.settings.lease);
        Ok(())
    }

    /// Gives the lease up (clean shutdown), so the others take over without waiting for expiry.
    pub async fn leave(&self) {
        self.view.write().lease_until = None;
        let left = async {
            let client = self.pool.get().await?;
            client
                .execute(
                    "DELETE FROM brokers WHERE broker_id = $1",
                    &[&i64::from(self.settings.broker_id)],
                )
                .await
                .map_err(CloudError::pg("leaving the cluster"))
        };
        if let Err(error) = left.await {
            tracing::warn!(%error, "could not remove this broker's lease; it expires on its own");
        }
    }

    /// Whether this broker's lease is held now.
    pub fn holds_lease(&self) -> bool {
        self.view
            .read()
            .lease_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// The brokers clients can reach, by id (a broker with neither its Kafka nor its RocketMQ
    /// listener bound yet is left out; each frontend skips those without its own port): the
    /// live ones of the last view, and always this broker itself once a listener is bound,
    /// lease or not. A client drops every broker a metadata answer leaves out, its bootstrap
    /// servers included (librdkafka 2.10+), and then has nowhere to ask again: an empty list
    /// during a lost lease stalls it for good, while listing this broker keeps it asking here
    /// (and at the others) until the lease is back.
    pub fn live(&self) -> Vec<BrokerAddress> {
        let own = self.settings.broker_id as i32;
        let mut live: Vec<BrokerAddress> = self
            .view
            .read()
            .live
            .iter()
            .filter(|b| (b.port != 0 || b.rocketmq_port.is_some()) && b.id != own)
            .cloned()
            .collect();
        let port = self.kafka_port.load(Ordering::Acquire);
        let rocketmq_port = self.own_rocketmq_port();
        if port != 0 || rocketmq_port.is_some() {
            live.push(BrokerAddress {
                id: own,
                host: self.settings.host.clone(),
                port,
                tls_port: self.own_tls_port(),
                rocketmq_port,
            });
            live.sort_by_key(|broker| broker.id);
        }
        live
    }

    /// The ids of the live brokers leadership is spread over (the last view, listeners bound
    /// or not).
    pub fn live_ids(&self) -> Vec<i32> {
        self.view
            .read()
            .live
            .iter()
            .map(|broker| broker.id)
            .collect()
    }

    /// The live broker with the highest score for `key`; `None` without a lease.
    pub fn owner(&self, key: &[u8]) -> Option<i32> {
        if !self.holds_lease() {
            return None;
        }
        let view = self.view.read();
        view.live
            .iter()
            .max_by_key(|broker| rendezvous(key, broker.id as u32))
            .map(|broker| broker.id)
    }

    /// The broker leading `tp` in this broker's view.
    pub fn leader(&self, tp: &TopicPartition) -> Option<i32> {
        self.owner(&partition_key(tp))
    }

    /// Whether this broker leads `tp` in its view.
    pub fn leads(&self, tp: &TopicPartition) -> bool {
        self.leader(tp) == Some(self.settings.broker_id as i32)
    }

    /// The coordinator of the group `key`.
    pub fn coordinator(&self, key: &str) -> Option<i32> {
        let mut bytes = Vec::with_capacity(key.len() + 1);
        bytes.extend_from_slice(b"g");
        bytes.extend_from_slice(key.as_bytes());
        self.owner(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(id: i32, port: u16) -> BrokerAddress {
        BrokerAddress {
            id,
            host: "127.0.0.1".to_owned(),
            port,
            tls_port: None,
            rocketmq_port: None,
        }
    }

    #[test]
    fn without_a_lease_it_leads_nothing_but_still_lists_itself() {
        let stats = Arc::new(Stats::default());
        let pool = PgPool::new("postgres://nobody@127.0.0.1:1/none", 1, stats.clone())
            .expect("pool (never connected)");
        let members = Membership::new(
            MemberSettings {
                broker_id: 2,
                host: "127.0.0.1".to_owned(),
                lease: Duration::from_secs(2),
                renew: Duration::from_millis(200),
            },
            pool,
            stats,
        );
        // Not bound yet: nothing to advertise.
        assert_eq!(members.live(), Vec::new());
        members.set_kafka_port(9002);
        assert_eq!(members.live(), vec![address(2, 9002)], "never held a lease");
        // A view learnt while the lease held, which then ran out.
        members.view.write().live = vec![address(1, 9001), address(2, 9002), address(3, 0)];
        assert!(!members.holds_lease());
        assert_eq!(members.live(), vec![address(1, 9001), address(2, 9002)]);
        assert_eq!(members.leader(&TopicPartition::new("t", 0)), None);
        assert_eq!(members.coordinator("group"), None);
        members.view.write().lease_until = Some(Instant::now() + Duration::from_secs(60));
        assert_eq!(members.live(), vec![address(1, 9001), address(2, 9002)]);
        assert!(members.leader(&TopicPartition::new("t", 0)).is_some());
        // A TLS listener, once bound, is advertised with this broker's own entry.
        members.set_kafka_tls_port(9102);
        let own = members
            .live()
            .into_iter()
            .find(|b| b.id == 2)
            .expect("itself");
        assert_eq!((own.port, own.tls_port), (9002, Some(9102)));
        // A broker serving RocketMQ alone is listed for RocketMQ's routes.
        let mut rocketmq_only = address(3, 0);
        rocketmq_only.rocketmq_port = Some(10_913);
        members.view.write().live = vec![address(1, 9001), address(2, 9002), rocketmq_only];
        members.set_rocketmq_port(10_912);
        let ports: Vec<_> = members
            .live()
            .iter()
            .map(|b| (b.id, b.port, b.rocketmq_port))
            .collect();
        assert_eq!(
            ports,
            vec![
                (1, 9001, None),
                (2, 9002, Some(10_912)),
                (3, 0, Some(10_913))
            ]
        );
    }

    #[test]
    fn rendezvous_spreads_and_moves_only_the_leavers_partitions() {
        let owner = |brokers: &[u32], tp: u32| {
            let key = partition_key(&TopicPartition::new("t", tp));
            *brokers
                .iter()
                .max_by_key(|id| rendezvous(&key, **id))
                .unwrap()
        };
        let three = [1, 2, 3];
        let mut counts = [0usize; 4];
        for tp in 0..300 {
            counts[owner(&three, tp) as usize] += 1;
        }
        for id in three {
            assert!(counts[id as usize] > 60, "broker {id} leads {counts:?}");
        }
        for tp in 0..300 {
            let before = owner(&three, tp);
            let after = owner(&[1, 3], tp);
            if before != 2 {
                assert_eq!(
                    before, after,
                    "partition {tp} moved though its leader stayed"
                );
            }
        }
    }
}
