//! Group membership learnt from HEART_BEAT: which client ids are in a consumer group (for
//! GET_CONSUMER_LIST_BY_GROUP) and what each subscribed to (for pulls without FLAG_SUBSCRIPTION):
//! a tag expression, or a SQL92 expression compiled once at heartbeat (kept with its error when
//! it does not compile, so pulls can answer as RocketMQ does); and which connections serve a
//! producer group (for CHECK_TRANSACTION_STATE).
//!
//! Invariants: a member is keyed by client id and the connection it heartbeats on (as RocketMQ
//! keys them by channel: two processes on one host may share a client id, as broadcasting
//! consumers do, `ip@DEFAULT`); closing that connection removes it, so the member list every
//! client sees is the same sorted, de-duplicated list of ids. State is in memory only: clients
//! heartbeat every 30 s and after a reconnect.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use crate::codec::SerializeType;
use crate::error::{RequestError, RequestResult};
use crate::filter::{FilterError, SqlFilter};

/// A tag subscription: `None` matches every message (`*` or an empty expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagFilter(Option<HashSet<String>>);

impl TagFilter {
    /// Parses `"*"` or `"TagA || TagB"`.
    pub(crate) fn parse(expression: &str) -> Self {
        let expression = expression.trim();
        if expression.is_empty() || expression == "*" {
            return Self(None);
        }
        let tags: HashSet<String> = expression
            .split("||")
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(str::to_owned)
            .collect();
        if tags.contains("*") || tags.is_empty() {
            Self(None)
        } else {
            Self(Some(tags))
        }
    }

    pub(crate) fn matches(&self, tag: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(tags) => tag.is_some_and(|tag| tags.contains(tag)),
        }
    }
}

/// What a consumer subscribed a topic with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Subscription {
    Tags(TagFilter),
    /// A SQL92 expression, or why it did not compile.
    Sql(Result<Arc<SqlFilter>, FilterError>),
}

impl Subscription {
    /// Parses `expression` of `expression_type` (`TAG` when absent or empty, or `SQL92`).
    pub(crate) fn parse(expression_type: Option<&str>, expression: &str) -> Self {
        match expression_type.map(str::trim) {
            None | Some("") => Self::Tags(TagFilter::parse(expression)),
            Some(kind) if kind.eq_ignore_ascii_case("TAG") => {
                Self::Tags(TagFilter::parse(expression))
            }
            Some(kind) if kind.eq_ignore_ascii_case("SQL92") => {
                Self::Sql(SqlFilter::compile(expression).map(Arc::new))
            }
            Some(kind) => Self::Sql(Err(FilterError::Invalid(format!(
                "unknown expression type {kind}"
            )))),
        }
    }

    /// Every message.
    pub(crate) fn all() -> Self {
        Self::Tags(TagFilter(None))
    }

    /// Whether a message whose properties `property` looks up is selected (never, for a SQL92
    /// expression that did not compile).
    pub(crate) fn matches<'a>(&'a self, property: impl Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Self::Tags(tags) => tags.matches(property("TAGS")),
            Self::Sql(Ok(sql)) => sql.matches(property),
            Self::Sql(Err(_)) => false,
        }
    }

    /// Whether every message matches (`*`): a reader then knows in advance how many of the
    /// records it decodes it will deliver.
    pub(crate) fn selects_all(&self) -> bool {
        matches!(self, Self::Tags(TagFilter(None)))
    }
}

/// MessageModel ordinals.
pub(crate) const BROADCASTING: u8 = 0;
pub(crate) const CLUSTERING: u8 = 1;

#[derive(Debug)]
struct Member {
    connection: u64,
    /// The header encoding the client uses, for requests sent to it.
    serialize_type: SerializeType,
    subscriptions: HashMap<String, Subscription>,
    message_model: u8,
}

/// The connection a client heartbeated on, as requests to it need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientChannel {
    pub(crate) connection: u64,
    pub(crate) serialize_type: SerializeType,
    /// The broker address the client reached (the store host of messages sent to it).
    pub(crate) local: SocketAddr,
}

/// A group's members by (client id, connection).
type Members = BTreeMap<(String, u64), Member>;

/// Group membership, shared by every broker connection.
#[derive(Debug, Default)]
pub(crate) struct ClientRegistry {
    groups: Mutex<HashMap<String, Members>>,
    /// Producer group -> client id -> its connection.
    producers: Mutex<HashMap<String, BTreeMap<String, ClientChannel>>>,
}

/// The group part of one heartbeat, decoded leniently (enum names or ordinals, numbers or
/// strings, as the clients send them).
#[derive(Debug, PartialEq)]
pub(crate) struct Heartbeat {
    pub(crate) client_id: String,
    /// Consumer group -> (topic -> subscription).
    pub(crate) consumers: Vec<(String, Vec<(String, Subscription)>)>,
    /// Consumer group -> MessageModel ordinal (0 broadcasting, 1 clustering).
    pub(crate) models: Vec<(String, u8)>,
    /// Producer groups of `producerDataSet`.
    pub(crate) producers: Vec<String>,
}

impl Heartbeat {
    pub(crate) fn parse(body: &[u8]) -> RequestResult<Self> {
        let value: Value = serde_json::from_slice(body)?;
        let client_id = value
            .get("clientID")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        check_name("clientID", &client_id)?;
        let mut consumers = Vec::new();
        let mut models = Vec::new();
        for consumer in value
            .get("consumerDataSet")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(group) = consumer.get("groupName").and_then(Value::as_str) else {
                continue;
            };
            check_name("groupName", group)?;
            let subscriptions = consumer
                .get("subscriptionDataSet")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|sub| {
                    let topic = sub.get("topic")?.as_str()?;
                    let expression = sub.get("subString").and_then(Value::as_str).unwrap_or("*");
                    let kind = sub.get("expressionType").and_then(Value::as_str);
                    Some((topic.to_owned(), Subscription::parse(kind, expression)))
                })
                .collect();
            let model = match consumer.get("messageModel") {
                Some(Value::String(name)) if name == "BROADCASTING" => BROADCASTING,
                Some(Value::Number(ordinal)) if ordinal.as_u64() == Some(0) => BROADCASTING,
                _ => CLUSTERING,
            };
            models.push((group.to_owned(), model));
            consumers.push((group.to_owned(), subscriptions));
        }
        let producers: Vec<String> = value
            .get("producerDataSet")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|producer| producer.get("groupName")?.as_str())
            .map(str::to_owned)
            .collect();
        for group in &producers {
            check_name("groupName", group)?;
        }
        if consumers.len() + producers.len() > MAX_HEARTBEAT_GROUPS {
            return Err(RequestError::InvalidBody(format!(
                "a heartbeat names {} groups, more than the {MAX_HEARTBEAT_GROUPS} accepted",
                consumers.len() + producers.len()
            )));
        }
        Ok(Self {
            client_id,
            consumers,
            models,
            producers,
        })
    }
}

/// Longest client id or group name a heartbeat may register: RocketMQ refuses group names over
/// 255 characters, and the registry keeps these strings for as long as the connection lives.
pub(crate) const MAX_HEARTBEAT_NAME_BYTES: usize = 255;
/// Most groups (consumer and producer together) one heartbeat may register; a client process
/// has a handful, and each one is an entry the registry keeps.
pub(crate) const MAX_HEARTBEAT_GROUPS: usize = 1024;

fn check_name(field: &'static str, name: &str) -> RequestResult<()> {
    if name.len() <= MAX_HEARTBEAT_NAME_BYTES {
        return Ok(());
    }
    let shown: String = name.chars().take(32).collect();
    Err(RequestError::InvalidBody(format!(
        "heartbeat field `{field}` is {} bytes long (`{shown}...`), more than {MAX_HEARTBEAT_NAME_BYTES}",
        name.len()
    )))
}

impl ClientRegistry {
    /// Records a heartbeat; returns the consumer groups whose member list changed.
    pub(crate) fn heartbeat(&self, channel: ClientChannel, heartbeat: Heartbeat) -> Vec<String> {
        let ClientChannel {
            connection,
            serialize_type,
            ..
        } = channel;
        let mut producers = self.producers.lock();
        for group in heartbeat.producers {
            producers
                .entry(group)
                .or_default()
                .insert(heartbeat.client_id.clone(), channel);
        }
        drop(producers);
        let mut groups = self.groups.lock();
        let mut changed = Vec::new();
        for (group, subscriptions) in heartbeat.consumers {
            let message_model = heartbeat
                .models
                .iter()
                .find(|(name, _)| *name == group)
                .map_or(CLUSTERING, |(_, model)| *model);
            let members = groups.entry(group.clone()).or_default();
            let member = Member {
                connection,
                serialize_type,
                message_model,
                subscriptions: subscriptions.into_iter().collect(),
            };
            // A reconnect is a new member; the old connection's entry goes when it closes.
            let previous = members.insert((heartbeat.client_id.clone(), connection), member);
            if previous.is_none() {
                changed.push(group);
            }
        }
        changed
    }

    /// Removes a producer from its group (UNREGISTER_CLIENT with `producerGroup`).
    pub(crate) fn unregister_producer(&self, client_id: &str, group: &str) {
        let mut producers = self.producers.lock();
        if let Some(members) = producers.get_mut(group) {
            members.remove(client_id);
            if members.is_empty() {
                producers.remove(group);
            }
        }
    }

    /// A live connection of producer `group` (the one of its lowest client id).
    pub(crate) fn producer(&self, group: &str) -> Option<ClientChannel> {
        self.producers
            .lock()
            .get(group)
            .and_then(|members| members.values().next().copied())
    }

    /// Removes a client's membership on `connection` from a group (UNREGISTER_CLIENT); returns
    /// whether it was a member.
    pub(crate) fn unregister(&self, client_id: &str, connection: u64, group: &str) -> bool {
        let mut groups = self.groups.lock();
        let Some(members) = groups.get_mut(group) else {
            return false;
        };
        let removed = members
            .remove(&(client_id.to_owned(), connection))
            .is_some();
        if members.is_empty() {
            groups.remove(group);
        }
        removed
    }

    /// Drops every member that last heartbeated on `connection`; returns the affected consumer
    /// groups.
    pub(crate) fn connection_closed(&self, connection: u64) -> Vec<String> {
        self.producers.lock().retain(|_, members| {
            members.retain(|_, channel| channel.connection != connection);
            !members.is_empty()
        });
        let mut groups = self.groups.lock();
        let mut changed = Vec::new();
        groups.retain(|group, members| {
            let before = members.len();
            members.retain(|_, member| member.connection != connection);
            if members.len() != before {
                changed.push(group.clone());
            }
            !members.is_empty()
        });
        changed
    }

    /// The (consumer group, client id) memberships held through `connection`.
    pub(crate) fn memberships_on(&self, connection: u64) -> Vec<(String, String)> {
        self.groups
            .lock()
            .iter()
            .flat_map(|(group, members)| {
                members
                    .iter()
                    .filter(move |(_, member)| member.connection == connection)
                    .map(move |((client_id, _), _)| (group.clone(), client_id.clone()))
            })
            .collect()
    }

    /// Whether `client_id` is a member of `group` on any connection.
    pub(crate) fn is_member(&self, group: &str, client_id: &str) -> bool {
        self.groups.lock().get(group).is_some_and(|members| {
            members
                .range((client_id.to_owned(), 0)..=(client_id.to_owned(), u64::MAX))
                .next()
                .is_some()
        })
    }

    /// The consumer groups with live members, sorted.
    pub(crate) fn consumer_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.groups.lock().keys().cloned().collect();
        groups.sort();
        groups
    }

    /// The sorted client ids of a group.
    pub(crate) fn members(&self, group: &str) -> Vec<String> {
        self.groups
            .lock()
            .get(group)
            .map(|members| {
                let mut ids: Vec<String> = members.keys().map(|(id, _)| id.clone()).collect();
                ids.dedup();
                ids
            })
            .unwrap_or_default()
    }

    /// The connections of `group`'s members, with the header encoding each one uses.
    pub(crate) fn connections(&self, group: &str) -> Vec<(u64, SerializeType)> {
        self.groups
            .lock()
            .get(group)
            .map(|members| {
                members
                    .values()
                    .map(|member| (member.connection, member.serialize_type))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The MessageModel ordinal `group`'s members registered (clustering when unknown).
    pub(crate) fn message_model(&self, group: &str) -> u8 {
        self.groups
            .lock()
            .get(group)
            .and_then(|members| members.values().next())
            .map_or(CLUSTERING, |member| member.message_model)
    }

    /// The subscription some member of `group` registered for `topic`.
    pub(crate) fn subscription(&self, group: &str, topic: &str) -> Option<Subscription> {
        let groups = self.groups.lock();
        groups
            .get(group)?
            .values()
            .find_map(|member| member.subscriptions.get(topic).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions() {
        assert!(TagFilter::parse("*").matches(None));
        assert!(TagFilter::parse("").matches(Some("x")));
        let filter = TagFilter::parse("TagA || TagB");
        assert!(filter.matches(Some("TagA")));
        assert!(filter.matches(Some("TagB")));
        assert!(!filter.matches(Some("TagC")));
        assert!(!filter.matches(None));
    }

    fn channel(connection: u64, serialize_type: SerializeType) -> ClientChannel {
        ClientChannel {
            connection,
            serialize_type,
            local: "127.0.0.1:10911".parse().unwrap(),
        }
    }

    #[test]
    fn heartbeats_with_names_or_ordinals_register_members() {
        // The C++ client's form: ordinals and a string subVersion.
        let cpp = br#"{"clientID":"21796-127.0.0.1@DEFAULT","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,"groupName":"CID-smoke","messageModel":1,"subscriptionDataSet":[{"subString":"*","subVersion":"1795575829530","topic":"%RETRY%CID-smoke"},{"codeSet":[0],"subString":"TagA","subVersion":"1795575829530","tagsSet":["TagA"],"topic":"TopicTest"}]}],"producerDataSet":[{"groupName":"PID-smoke"}]}"#;
        let registry = ClientRegistry::default();
        let changed = registry.heartbeat(
            channel(1, SerializeType::Json),
            Heartbeat::parse(cpp).unwrap(),
        );
        assert!(
            registry
                .heartbeat(
                    channel(1, SerializeType::Json),
                    Heartbeat::parse(cpp).unwrap()
                )
                .is_empty(),
            "a repeated heartbeat changes nothing"
        );
        assert_eq!(changed, vec!["CID-smoke".to_owned()]);
        let Some(Subscription::Tags(filter)) = registry.subscription("CID-smoke", "TopicTest")
        else {
            panic!("no tag subscription registered");
        };
        assert!(filter.matches(Some("TagA")) && !filter.matches(Some("TagB")));
        let rust = br#"{"clientID":"192.0.2.2@1#2","producerDataSet":[],"consumerDataSet":[{"groupName":"CID-smoke","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","subscriptionDataSet":[{"topic":"TopicTest","subString":"*","subVersion":1}]}],"heartbeatFingerprint":0,"withoutSub":false}"#;
        registry.heartbeat(
            channel(2, SerializeType::RocketMq),
            Heartbeat::parse(rust).unwrap(),
        );
        assert_eq!(
            registry.connections("CID-smoke"),
            vec![(2, SerializeType::RocketMq), (1, SerializeType::Json)]
        );
        assert_eq!(
            registry.members("CID-smoke"),
            vec![
                "192.0.2.2@1#2".to_owned(),
                "21796-127.0.0.1@DEFAULT".to_owned()
            ]
        );
        assert_eq!(registry.message_model("CID-smoke"), CLUSTERING);
        let broadcast = br#"{"clientID":"b@1","consumerDataSet":[{"groupName":"CID-b","messageModel":"BROADCASTING","subscriptionDataSet":[]}]}"#;
        registry.heartbeat(
            channel(3, SerializeType::Json),
            Heartbeat::parse(broadcast).unwrap(),
        );
        assert_eq!(registry.message_model("CID-b"), BROADCASTING);
        // A second process with the same client id (broadcasting's `ip@DEFAULT`) is a member too.
        let again = registry.heartbeat(
            channel(4, SerializeType::Json),
            Heartbeat::parse(broadcast).unwrap(),
        );
        assert_eq!(again, vec!["CID-b".to_owned()]);
        assert_eq!(registry.connections("CID-b").len(), 2);
        assert_eq!(registry.members("CID-b"), vec!["b@1".to_owned()]);
        assert_eq!(registry.connection_closed(4), vec!["CID-b".to_owned()]);
        assert_eq!(
            registry.connections("CID-b"),
            vec![(3, SerializeType::Json)]
        );
        assert_eq!(
            registry.producer("PID-smoke"),
            Some(channel(1, SerializeType::Json))
        );
        assert_eq!(registry.connection_closed(1), vec!["CID-smoke".to_owned()]);
        assert_eq!(
            registry.producer("PID-smoke"),
            None,
            "left with its connection"
        );
        assert_eq!(registry.members("CID-smoke").len(), 1);
        assert!(!registry.unregister("192.0.2.2@1#2", 9, "CID-smoke"));
        assert!(registry.unregister("192.0.2.2@1#2", 2, "CID-smoke"));
        assert!(registry.members("CID-smoke").is_empty());
        assert!(Heartbeat::parse(b"not json").is_err());
        let long = "g".repeat(MAX_HEARTBEAT_NAME_BYTES + 1);
        let fits = "g".repeat(MAX_HEARTBEAT_NAME_BYTES);
        let with_client = |id: &str| format!(r#"{{"clientID":"{id}"}}"#);
        assert!(Heartbeat::parse(with_client(&fits).as_bytes()).is_ok());
        assert!(Heartbeat::parse(with_client(&long).as_bytes()).is_err());
        let with_group = |group: &str| {
            format!(r#"{{"clientID":"c","consumerDataSet":[{{"groupName":"{group}"}}]}}"#)
        };
        assert!(Heartbeat::parse(with_group(&fits).as_bytes()).is_ok());
        assert!(Heartbeat::parse(with_group(&long).as_bytes()).is_err());
        let producer =
            format!(r#"{{"clientID":"c","producerDataSet":[{{"groupName":"{long}"}}]}}"#);
        assert!(Heartbeat::parse(producer.as_bytes()).is_err());
        let groups = |count: usize| {
            let set: Vec<String> = (0..count)
                .map(|n| format!(r#"{{"groupName":"p{n}"}}"#))
                .collect();
            format!(
                r#"{{"clientID":"c","producerDataSet":[{}]}}"#,
                set.join(",")
            )
        };
        assert!(Heartbeat::parse(groups(MAX_HEARTBEAT_GROUPS).as_bytes()).is_ok());
        assert!(Heartbeat::parse(groups(MAX_HEARTBEAT_GROUPS + 1).as_bytes()).is_err());
    }

    #[test]
    fn sql92_subscriptions_compile_at_heartbeat() {
        let heartbeat = br#"{"clientID":"s@1","consumerDataSet":[{"groupName":"CID-sql","subscriptionDataSet":[{"topic":"T","subString":"a > 1 AND b = 'x'","expressionType":"SQL92"},{"topic":"U","subString":"a >","expressionType":"SQL92"},{"topic":"V","subString":"A || B","expressionType":"TAG"}]}]}"#;
        let registry = ClientRegistry::default();
        registry.heartbeat(
            channel(1, SerializeType::Json),
            Heartbeat::parse(heartbeat).unwrap(),
        );
        let sql = registry.subscription("CID-sql", "T").unwrap();
        let message = [("a", "2"), ("b", "x"), ("TAGS", "A")];
        let lookup = |name: &str| message.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert!(sql.matches(lookup));
        assert!(!sql.matches(|_| None));
        let broken = registry.subscription("CID-sql", "U").unwrap();
        assert!(matches!(broken, Subscription::Sql(Err(_))));
        assert!(!broken.matches(lookup));
        assert!(
            registry
                .subscription("CID-sql", "V")
                .unwrap()
                .matches(lookup)
        );
        assert!(matches!(
            Subscription::parse(Some("XPATH"), "x"),
            Subscription::Sql(Err(_))
        ));
    }
}
