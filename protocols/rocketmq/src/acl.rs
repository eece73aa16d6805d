//! RocketMQ's plain ACL (`rocketmq.acl_enabled`), as RocketMQ 4.x/5.x clients speak it: each
//! request carries `AccessKey`, `Signature` and optionally `SecurityToken` among its header
//! fields, where
//!
//! ```text
//! Signature = base64(HMAC-SHA1(secret key, concat(values of every header field but Signature,
//!             in field-name order) ++ body))
//! ```
//!
//! (`AccessKey` and `SecurityToken` are among the signed fields.) Java clients before 4.9.4 add
//! `_UNIQUE_KEY_QUERY` to a query after signing it, so a signature that fails with that field
//! is tried again without it, as RocketMQ's broker does for those clients. An access key is a broker user
//! name; its secret key is the password of a user added with `tributary user add
//! --rocketmq-secret`, the only users whose password the broker keeps. What a signed request
//! may touch comes from the same store as AMQP's permissions (the vhost `/`, through
//! [`tributary_api::AccessControl`]): write = send to a topic, read = pull a topic and use a
//! consumer group (heartbeats, offsets, locks, send-back; a group's `%RETRY%`/`%DLQ%` topics
//! are the group's), configure = create a topic (a send or route lookup that would create one,
//! UPDATE_AND_CREATE_TOPIC), and UPDATE_AND_CREATE_TOPIC and VIEW_MESSAGE_BY_ID (a message id
//! names no topic a check could use) also need the `administrator` tag.
//!
//! Address whitelists ([`crate::white_address`]), as RocketMQ's: a request from a peer the
//! global list (`Settings::acl_global_white`, RocketMQ's `globalWhiteRemoteAddresses`) matches
//! passes unchecked, as if the ACL were off; a request whose access key names a user with a
//! white address (RocketMQ's per-account `whiteRemoteAddress`) matching the peer is not asked
//! for a signature, and that user's permissions still apply (RocketMQ skips them too; we keep
//! them, so a whitelist only stands in for the signature). Both are the operator's explicit
//! choice: they are how a whitelisted host reaches topics without a secret.
//!
//! Invariants: with the ACL on, every request on either port needs a valid signature (or a
//! whitelisted peer, above) except the name server's route and cluster queries, which stay
//! open as in RocketMQ (a client asks them before it talks to a broker) but never create a
//! topic for an unsigned caller (a signed one creates a topic it may configure, or the
//! `%RETRY%`/`%DLQ%` topic of a group it may read; a request is signed when it names a
//! non-empty `AccessKey`; the C++ client sends the credential fields
//! empty, with a signature, when it has no credentials); a refusal is NO_PERMISSION (16) with
//! a remark naming what was missing, and a log line; the signature is compared in constant
//! time; the secret is never logged.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use tracing::{debug, warn};
use tributary_api::users::{get_user, same_bytes};
use tributary_api::{Access, AccessControl, EngineError};

use crate::codec::RemotingCommand;
use crate::connection::Connection;
use crate::error::{RequestError, RequestResult};
use crate::handlers::{DLQ_PREFIX, RETRY_PREFIX, request};
use crate::registry::Heartbeat;
use crate::white_address::WhiteList;
use crate::{Role, Shared};

/// Header field naming the access key (a user name).
pub const ACCESS_KEY: &str = "AccessKey";
/// Header field with the request's signature.
pub const SIGNATURE: &str = "Signature";
/// Header field with an optional session token (signed like any other field).
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// A field old Java clients add to a query after signing it.
const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

/// The bytes a signature covers: the values of every field but the signature (and, with
/// `skip_unique_key_query`, the query flag old clients add unsigned) in field-name order, then
/// the body.
pub fn signed_content(
    fields: &BTreeMap<String, String>,
    body: &[u8],
    skip_unique_key_query: bool,
) -> Vec<u8> {
    let mut content = Vec::new();
    for (name, value) in fields {
        if name != SIGNATURE && !(skip_unique_key_query && name == UNIQUE_KEY_QUERY) {
            content.extend_from_slice(value.as_bytes());
        }
    }
    content.extend_from_slice(body);
    content
}

/// `base64(HMAC-SHA1(secret, content))`.
pub fn signature(secret: &str, content: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(content);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Who sent a request, as far as the ACL is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The verified access key; `None` for an unsigned request the ACL lets through (or the
    /// ACL is off).
    pub(crate) user: Option<String>,
    /// Whether a route lookup may create its topic for this caller.
    pub(crate) may_create_topic: bool,
}

impl Caller {
    fn anyone() -> Self {
        Self {
            user: None,
            may_create_topic: true,
        }
    }
}

/// Admits `request` or refuses it with [`RequestError::NoPermission`] (logged here).
pub(crate) async fn admit(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<Caller> {
    if !shared.settings.acl_enabled {
        return Ok(Caller::anyone());
    }
    if let Some(pattern) = shared
        .settings
        .acl_global_white
        .matching(connection.peer.ip())
    {
        debug!(peer = %connection.peer, code = request.code, %pattern, "RocketMQ request admitted by the global white address list");
        return Ok(Caller::anyone());
    }
    // Fails closed: an ACL without a user store refuses everything.
    let outcome = match shared.access.as_deref() {
        Some(access) => check(shared, access, connection, request).await,
        None => Err(refused("the ACL is on but has no user store".to_owned())),
    };
    if let Err(RequestError::NoPermission(reason)) = &outcome {
        warn!(peer = %connection.peer, code = request.code, user = request.field(ACCESS_KEY).unwrap_or(""), %reason, "RocketMQ request refused by the ACL");
    }
    outcome
}

async fn check(
    shared: &Shared,
    access: &dyn AccessControl,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<Caller> {
    let open_query = connection.role == Role::NameServer
        && matches!(
            request.code,
            request::GET_ROUTEINFO_BY_TOPIC | request::GET_BROKER_CLUSTER_INFO
        );
    // A signature without an access key names nobody: the C++ client signs every request,
    // with an empty `AccessKey` when it has no credentials.
    let signed = credential(request, ACCESS_KEY).is_some();
    if open_query && !signed {
        return Ok(Caller {
            user: None,
            may_create_topic: false,
        });
    }
    let user = authenticate(shared, connection, request).await?;
    let checks = Checks {
        access,
        user: &user,
    };
    let may_create_topic = if open_query {
        match request.field("topic") {
            // A consumer looks its own `%RETRY%<group>` topic up (ali-ons does, before its
            // first pull); RocketMQ's broker creates it for the group's heartbeat, so using
            // the group is enough, as for the retry topic's other requests.
            Some(topic) => match group_of(topic) {
                Some(group) => checks.has(Access::Read, group).await?,
                None => checks.has(Access::Configure, topic).await?,
            },
            None => false,
        }
    } else {
        authorize(shared, &checks, request).await?;
        true
    };
    Ok(Caller {
        user: Some(user),
        may_create_topic,
    })
}

/// A credential field of `request`; an empty one is none, since the C++ client sends
/// `AccessKey` (and `SecurityToken`) empty on every request when it has no credentials.
fn credential<'a>(request: &'a RemotingCommand, name: &str) -> Option<&'a str> {
    request.field(name).filter(|value| !value.is_empty())
}

fn refused(reason: String) -> RequestError {
    RequestError::NoPermission(reason)
}

/// The verified access key of a signed request, or of a request from an address its user's
/// white address admits.
async fn authenticate(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<String> {
    let missing = || {
        refused(format!(
            "No accessKey is configured: request code {} needs `{ACCESS_KEY}` and `{SIGNATURE}` (rocketmq.acl_enabled)",
            request.code
        ))
    };
    let user = credential(request, ACCESS_KEY).ok_or_else(missing)?;
    let record = get_user(shared.engine.metadata.as_ref(), user).await?;
    if let Some(pattern) = record
        .as_ref()
        .and_then(|record| record.rocketmq_white_address())
        .and_then(|text| white_match(user, text, connection))
    {
        debug!(peer = %connection.peer, code = request.code, user, %pattern, "RocketMQ request admitted by its account's white address");
        return Ok(user.to_owned());
    }
    // The same answer whether or not the user exists, as below.
    let sent = credential(request, SIGNATURE).ok_or_else(missing)?;
    // One message for an unknown key, a key without a secret and a bad signature, so the
    // answer does not tell which user names exist.
    let invalid = || refused(format!("Check signature failed for accessKey={user}"));
    let Some(secret) = record.as_ref().and_then(|record| record.rocketmq_secret()) else {
        return Err(invalid());
    };
    let matches = |skip_unique_key_query| {
        let content = signed_content(&request.ext_fields, &request.body, skip_unique_key_query);
        same_bytes(
            signature(secret.expose(), &content).as_bytes(),
            sent.as_bytes(),
        )
    };
    let old_client_query = request.ext_fields.contains_key(UNIQUE_KEY_QUERY);
    let signed_by_secret = matches(false) || (old_client_query && matches(true));
    if !signed_by_secret {
        return Err(invalid());
    }
    Ok(user.to_owned())
}

/// The pattern of `user`'s white address `text` that admits the peer. A stored pattern was
/// checked when it was set; one that no longer parses admits nobody.
fn white_match(user: &str, text: &str, connection: &Connection) -> Option<String> {
    match WhiteList::parse(text) {
        Ok(list) => list.matching(connection.peer.ip()).map(str::to_owned),
        Err(error) => {
            warn!(user, %error, "a stored RocketMQ white address does not parse; it admits nobody, so requests must be signed");
            None
        }
    }
}

/// Permission lookups for one verified user.
struct Checks<'a> {
    access: &'a dyn AccessControl,
    user: &'a str,
}

impl Checks<'_> {
    async fn has(&self, access: Access, name: &str) -> RequestResult<bool> {
        Ok(self.access.allows(self.user, access, name).await?)
    }

    async fn need(&self, access: Access, kind: &str, name: &str) -> RequestResult<()> {
        if self.has(access, name).await? {
            return Ok(());
        }
        Err(refused(format!(
            "No permission: user `{}` lacks `{}` on {kind} `{name}` (tributary permissions, vhost /)",
            self.user,
            access.name()
        )))
    }

    /// Read on a consumer group.
    async fn group(&self, group: &str) -> RequestResult<()> {
        self.need(Access::Read, "group", group).await
    }

    /// Read on a topic; a group's retry and dead-letter topics are the group's.
    async fn read_topic(&self, topic: &str) -> RequestResult<()> {
        match group_of(topic) {
            Some(group) => self.group(group).await,
            None => self.need(Access::Read, "topic", topic).await,
        }
    }

    async fn administrator(&self, code: i32) -> RequestResult<()> {
        if self.access.is_administrator(self.user).await? {
            return Ok(());
        }
        Err(refused(format!(
            "No permission: request code {code} is for administrators; user `{}` lacks the administrator tag",
            self.user
        )))
    }
}

/// The group a `%RETRY%<group>` or `%DLQ%<group>` topic belongs to.
fn group_of(topic: &str) -> Option<&str> {
    topic
        .strip_prefix(RETRY_PREFIX)
        .or_else(|| topic.strip_prefix(DLQ_PREFIX))
}

fn field<'a>(request: &'a RemotingCommand, name: &'static str) -> RequestResult<&'a str> {
    request.field(name).ok_or(RequestError::MissingField(name))
}

/// Refuses a request the verified user may not make.
async fn authorize(
    shared: &Shared,
    checks: &Checks<'_>,
    request: &RemotingCommand,
) -> RequestResult<()> {
    use request::*;
    match request.code {
        SEND_MESSAGE | SEND_MESSAGE_V2 | SEND_BATCH_MESSAGE => {
            let name = if request.code == SEND_MESSAGE {
                "topic"
            } else {
                "b"
            };
            let topic = field(request, name)?;
            if let Some(group) = group_of(topic) {
                return checks.group(group).await;
            }
            checks.need(Access::Write, "topic", topic).await?;
            match shared.engine.topics.describe_topic(topic) {
                Err(EngineError::UnknownTopic(_)) if shared.settings.auto_create_topics => {
                    checks.need(Access::Configure, "topic", topic).await
                }
                _ => Ok(()),
            }
        }
        CONSUMER_SEND_MSG_BACK => checks.group(field(request, "group")?).await,
        PULL_MESSAGE | QUERY_CONSUMER_OFFSET | UPDATE_CONSUMER_OFFSET => {
            checks.group(field(request, "consumerGroup")?).await?;
            checks.read_topic(field(request, "topic")?).await
        }
        GET_MAX_OFFSET
        | GET_MIN_OFFSET
        | SEARCH_OFFSET_BY_TIMESTAMP
        | GET_EARLIEST_MSG_STORETIME
        | QUERY_MESSAGE => checks.read_topic(field(request, "topic")?).await,
        VIEW_MESSAGE_BY_ID => checks.administrator(request.code).await,
        UPDATE_AND_CREATE_TOPIC => {
            checks.administrator(request.code).await?;
            checks
                .need(Access::Configure, "topic", field(request, "topic")?)
                .await
        }
        HEART_BEAT => {
            let heartbeat = Heartbeat::parse(&request.body)?;
            for (group, subscriptions) in &heartbeat.consumers {
                checks.group(group).await?;
                for (topic, _) in subscriptions {
                    checks.read_topic(topic).await?;
                }
            }
            Ok(())
        }
        GET_CONSUMER_LIST_BY_GROUP => checks.group(field(request, "consumerGroup")?).await,
        UNREGISTER_CLIENT => match request.field("consumerGroup").filter(|g| !g.is_empty()) {
            Some(group) => checks.group(group).await,
            None => Ok(()),
        },
        LOCK_BATCH_MQ | UNLOCK_BATCH_MQ => {
            let body: serde_json::Value = serde_json::from_slice(&request.body)?;
            match body
                .get("consumerGroup")
                .and_then(serde_json::Value::as_str)
            {
                Some(group) => checks.group(group).await,
                None => Err(RequestError::MissingField("consumerGroup")),
            }
        }
        // Signed is enough: END_TRANSACTION resolves a half message its producer could write,
        // CHECK_CLIENT_CONFIG only compiles an expression, and a code not served here is
        // answered as unsupported.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn signatures_match_ones_a_captured_client_sent() {
        // The ali-ons C++ client's route queries in reference/captures (empty access and
        // secret keys): the signature covers the sorted values, not the names.
        let route = fields(&[
            ("AccessKey", ""),
            ("OnsChannel", "ALIYUN"),
            ("Signature", "N/YT7X6tJe5UfutmW+uNwTTJ7Fc="),
            ("topic", "TopicTest"),
        ]);
        assert_eq!(signed_content(&route, b"", false), b"ALIYUNTopicTest");
        assert_eq!(
            signature("", &signed_content(&route, b"", false)),
            "N/YT7X6tJe5UfutmW+uNwTTJ7Fc="
        );
        let retry = fields(&[
            ("AccessKey", ""),
            ("OnsChannel", "ALIYUN"),
            ("topic", "%RETRY%CID-smoke"),
        ]);
        assert_eq!(
            signature("", &signed_content(&retry, b"", false)),
            "1cpXABH0unz6D+/xPzcFbrxwvNg="
        );
    }

    /// A SEND_MESSAGE_V2 frame as ali-ons 3.12 encodes and signs it (its `Channel.beforeRequest`
    /// and `RemotingCommand.encode`, run on a header like its producer's, `accessKeyId` alice,
    /// `accessKeySecret` alice-secret): it signs `OnsChannel` too, writes numbers and booleans
    /// as JSON numbers and booleans (signed as their JavaScript text), leaves unset fields out,
    /// and sends a binary body. The broker's check must accept exactly this.
    #[test]
    fn a_captured_ali_ons_send_verifies() {
        let hex = [
            "0000013f000001367b22636f6465223a3331302c226c616e6775616765223a224a415641222c226f",
            "7061717565223a312c22666c6167223a302c2276657273696f6e223a3132312c226578744669656c",
            "6473223a7b225369676e6174757265223a22716c3572716f583057672f4164514e43764d4e396542",
            "74454e59553d222c224163636573734b6579223a22616c696365222c224f6e734368616e6e656c22",
            "3a22414c4959554e222c2261223a227067222c2262223a22636f6d7061742d746f706963222c2263",
            "223a22544257313032222c2264223a342c2265223a312c2266223a302c2267223a31373936363338",
            "3034343030302c2268223a302c2269223a22544147535c7530303031546167415c75303030324b45",
            "59535c75303030316b65792d315c7530303032222c226a223a302c226b223a66616c73657d7d0001",
            "02ff41",
        ]
        .concat();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
            .collect();
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        let command = crate::codec::decode_frame(&mut buf, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(command.code, request::SEND_MESSAGE_V2);
        assert_eq!(command.field("OnsChannel"), Some("ALIYUN"));
        assert_eq!(command.field("g"), Some("1796638044000"));
        assert_eq!(command.field("k"), Some("false"));
        assert_eq!(&command.body[..], &[0, 1, 2, 0xff, 0x41]);
        let content = signed_content(&command.ext_fields, &command.body, false);
        let sent = command.field(SIGNATURE).unwrap();
        assert_eq!(signature("alice-secret", &content), sent);
        assert_ne!(signature("alice-secreT", &content), sent);
    }

    #[test]
    fn the_body_and_every_field_but_the_signature_are_signed() {
        let base = fields(&[
            ("AccessKey", "alice"),
            ("_UNIQUE_KEY_QUERY", "x"),
            ("b", "orders"),
        ]);
        assert_eq!(signed_content(&base, b"body", false), b"alicexordersbody");
        assert_eq!(signed_content(&base, b"body", true), b"aliceordersbody");
        let signed = signature("pw", &signed_content(&base, b"body", false));
        assert_ne!(
            signed,
            signature("pw", &signed_content(&base, b"bodz", false))
        );
        assert_ne!(
            signed,
            signature("pX", &signed_content(&base, b"body", false))
        );
        assert_eq!(group_of("%RETRY%g1"), Some("g1"));
        assert_eq!(group_of("%DLQ%g1"), Some("g1"));
        assert_eq!(group_of("orders"), None);
    }
}
