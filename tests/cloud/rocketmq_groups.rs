//! RocketMQ consumer-group membership shared by the brokers of a cluster (src:
//! `cloud::roster`): two members heartbeat one broker each (A and B); a broker C that joins
//! empty answers GET_CONSUMER_LIST_BY_GROUP with both at once; a member joining through C is
//! pushed to A's member as NOTIFY_CONSUMER_IDS_CHANGED; a member unregistering through A
//! leaves every broker's list; B SIGKILLed, its member drops out of the list once B's lease is
//! gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::{Value, json};
use tributary_rocketmq::codec::{self, RemotingCommand, SerializeType};

use crate::broker::TestBroker;
use crate::cluster::start_broker;
use crate::services::{bucket, fresh_database, unique};

const HEART_BEAT: i32 = 34;
const UNREGISTER_CLIENT: i32 = 35;
const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
const GROUP: &str = "CID-shared";

/// A RocketMQ remoting connection speaking raw commands, keeping what the broker sent of its
/// own accord.
struct Remoting {
    stream: TcpStream,
    buf: BytesMut,
    opaque: i32,
    pushed: Vec<RemotingCommand>,
}

impl Remoting {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to the RocketMQ broker");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        Self {
            stream,
            buf: BytesMut::new(),
            opaque: 0,
            pushed: Vec::new(),
        }
    }

    /// The next frame within `within`, if any.
    fn frame(&mut self, within: Duration) -> Option<RemotingCommand> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(command) = codec::decode_frame(&mut self.buf, 1 << 20).expect("valid frame")
            {
                return Some(command);
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => panic!("reading from the broker: {error}"),
            }
        }
    }

    fn call(&mut self, command: RemotingCommand) -> RemotingCommand {
        self.opaque += 1;
        let mut command = command;
        command.opaque = self.opaque;
        let mut out = BytesMut::new();
        codec::encode_frame(&command, &mut out);
        self.stream.write_all(&out).expect("send a command");
        loop {
            let frame = self
                .frame(Duration::from_secs(10))
                .expect("a response within 10 s");
            if frame.is_response() && frame.opaque == self.opaque {
                assert_eq!(frame.code, 0, "command {} failed: {frame:?}", command.code);
                return frame;
            }
            if !frame.is_response() {
                self.pushed.push(frame);
            }
        }
    }

    fn heartbeat(&mut self, client_id: &str) {
        let body = json!({
            "clientID": client_id,
            "consumerDataSet": [{
                "groupName": GROUP,
                "messageModel": "CLUSTERING",
                "subscriptionDataSet": [{"topic": "SharedGroups", "subString": "*"}],
            }],
            "producerDataSet": [],
        });
        let request = RemotingCommand::request(HEART_BEAT, 0, SerializeType::Json)
            .with_body(serde_json::to_vec(&body).expect("json"));
        self.call(request);
    }

    fn unregister(&mut self, client_id: &str) {
        let request = RemotingCommand::request(UNREGISTER_CLIENT, 0, SerializeType::Json)
            .with_field("clientID", client_id)
            .with_field("consumerGroup", GROUP);
        self.call(request);
    }

    fn members(&mut self) -> Vec<String> {
        let request = RemotingCommand::request(GET_CONSUMER_LIST_BY_GROUP, 0, SerializeType::Json)
            .with_field("consumerGroup", GROUP);
        let response = self.call(request);
        let body: Value = serde_json::from_slice(&response.body).expect("json body");
        body["consumerIdList"]
            .as_array()
            .expect("consumerIdList")
            .iter()
            .map(|id| id.as_str().expect("an id").to_owned())
            .collect()
    }

    /// Whether the broker pushed NOTIFY_CONSUMER_IDS_CHANGED for the group within `within`.
    fn told_to_rebalance(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let told = self.pushed.iter().any(|command| {
                command.code == NOTIFY_CONSUMER_IDS_CHANGED
                    && command.field("consumerGroup") == Some(GROUP)
            });
            if told {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            if let Some(frame) = self.frame(Duration::from_millis(200))
                && !frame.is_response()
            {
                self.pushed.push(frame);
            }
        }
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|id| (*id).to_owned()).collect()
}

/// Asks `connection` until it lists `want` or `within` passes; the last answer.
fn members_until(connection: &mut Remoting, want: &[String], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let members = connection.members();
        if members == want || Instant::now() > deadline {
            return members;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_broker_lists_every_member_of_a_group_and_tells_them_of_changes() {
    let rt = crate::rocketmq_support::runtime();
    let database = rt.block_on(fresh_database("rmq_groups"));
    let objects = format!("s3://{}/{}", bucket(), unique("rmq-groups"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config.path(), "[cluster]\nflush_interval_ms = 50\n").expect("write config");
    let config = config.path().to_str().expect("utf-8").to_owned();
    let mut brokers: Vec<TestBroker> = (1..=2)
        .map(|id| start_broker(id, &database, &objects, &config))
        .collect();
    let mut on_a = Remoting::connect(brokers[0].addr("rocketmq-broker"));
    let mut on_b = Remoting::connect(brokers[1].addr("rocketmq-broker"));
    on_a.heartbeat("member-a");
    on_b.heartbeat("member-b");
    // Heartbeats are recorded in the background, within milliseconds.
    let both = ids(&["member-a", "member-b"]);
    assert_eq!(
        members_until(&mut on_a, &both, Duration::from_secs(3)),
        both,
        "A lists B's member"
    );
    // C joins empty: nobody heartbeated it, yet its first answer is the whole group.
    brokers.push(start_broker(3, &database, &objects, &config));
    let mut on_c = Remoting::connect(brokers[2].addr("rocketmq-broker"));
    assert_eq!(
        on_c.members(),
        ids(&["member-a", "member-b"]),
        "a broker that joined empty lists the members the others know"
    );
    // A member joining through C is news to A's member, which is told to rebalance.
    on_a.pushed.clear();
    on_c.heartbeat("member-c");
    assert!(
        on_a.told_to_rebalance(Duration::from_secs(5)),
        "A's member was told that the group changed through C"
    );
    assert_eq!(
        members_until(
            &mut on_b,
            &ids(&["member-a", "member-b", "member-c"]),
            Duration::from_secs(5)
        ),
        ids(&["member-a", "member-b", "member-c"])
    );
    // Leaving through A: gone from every list, and C's member is told.
    on_c.pushed.clear();
    on_a.unregister("member-a");
    assert!(
        on_c.told_to_rebalance(Duration::from_secs(5)),
        "C's member was told that the group changed through A"
    );
    assert_eq!(
        members_until(
            &mut on_c,
            &ids(&["member-b", "member-c"]),
            Duration::from_secs(5)
        ),
        ids(&["member-b", "member-c"])
    );
    // B dies without closing anything: its member drops out once B's lease expires (3 s).
    // (Dropping a TestBroker SIGKILLs it.)
    let b = brokers.remove(1);
    let killed = Instant::now();
    drop(b);
    drop(on_b);
    let left = members_until(&mut on_c, &ids(&["member-c"]), Duration::from_secs(15));
    assert_eq!(
        left,
        ids(&["member-c"]),
        "B's member is gone with B's lease"
    );
    eprintln!(
        "rocketmq_groups: a dead broker's member left the list after {:?}",
        killed.elapsed()
    );
}
