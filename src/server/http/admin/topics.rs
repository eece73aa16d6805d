//! `/api/topics` and `/api/groups`: Tributary's own endpoints for the log (shared by Kafka,
//! RocketMQ and AMQP streams) and the consumer groups of Kafka and RocketMQ (one offset table).
//!
//! Topics: list, create (`POST`, body `name`, `partitions`, `settings`), describe (partitions
//! with log start, high watermark, record count and bytes on disk), change (`PUT`: grow to
//! `partitions`, replace `settings`), delete. `settings` here are the retention, segment,
//! durability, `cleanup_policy` and `message_timestamp_type` ones; the finer compaction
//! settings are set through Kafka's config APIs. Internal topics (the logs behind AMQP classic
//! queues) are listed only with `?internal=true`.
//!
//! Groups: list, describe (committed offset, high watermark and lag per partition, which is
//! per queue for RocketMQ; the Kafka coordinator's state and members; a RocketMQ consumer
//! group's live members by client id, from their heartbeats), reset offsets
//! (`POST /api/groups/{group}/reset`, body `topic`, `to` = `earliest` | `latest` | an offset,
//! optional `partitions`), delete (its committed offsets). Reset and delete are refused with
//! 409 while the group has Kafka members, as Kafka refuses them (`GROUP_NOT_EMPTY`). A reset of
//! a RocketMQ group with live members works as RocketMQ's `resetOffset`: the offsets are stored
//! and each member is told (RESET_CONSUMER_CLIENT_OFFSET) to continue from them; the answer's
//! `reset` says how many members were told.

use hyper::Method;
use serde_json::{Value, json};
use tributary_api::{CommittedOffset, Durability, TopicDescription, TopicPartition, TopicSettings};

use super::json::{integer, object, required};
use super::{AdminApi, Call, not_found};
use crate::server::http::reply::{self, ApiError, HttpResponse};

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn settings_json(settings: &TopicSettings) -> Value {
    json!({
        "retention_ms": settings.retention_ms, "retention_bytes": settings.retention_bytes,
        "segment_bytes": settings.segment_bytes, "segment_ms": settings.segment_ms,
        "max_message_bytes": settings.max_message_bytes,
        "durability": settings.durability.map(|d| d.to_string()),
        "cleanup_policy": settings.cleanup_policy.map(|p| p.to_string()),
        "message_timestamp_type": settings.timestamp_type.map(|t| t.to_string()),
    })
}

/// Topic settings from a body's `settings` object; absent fields use the broker default.
pub(super) fn parse_settings(value: Option<&Value>) -> Result<TopicSettings, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(TopicSettings::default());
    };
    object(value)?;
    let unsigned = |name: &str| -> Result<Option<u64>, ApiError> {
        integer(value, name)?
            .map(|n| {
                u64::try_from(n)
                    .map_err(|_| ApiError::bad_request(format!("`{name}` must be >= 0")))
            })
            .transpose()
    };
    let durability = match value.get("durability") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            text.parse::<Durability>()
                .map_err(|error| ApiError::bad_request(format!("`durability`: {error}")))?,
        ),
        Some(_) => return Err(ApiError::bad_request("`durability` must be a string")),
    };
    let max_message_bytes = unsigned("max_message_bytes")?
        .map(|n| {
            u32::try_from(n).map_err(|_| ApiError::bad_request("`max_message_bytes` is too large"))
        })
        .transpose()?;
    let text = |name: &str| match value.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be a string"))),
    };
    let cleanup_policy = text("cleanup_policy")?
        .map(|text| {
            text.parse()
                .map_err(|error| ApiError::bad_request(format!("`cleanup_policy`: {error}")))
        })
        .transpose()?;
    let timestamp_type = text("message_timestamp_type")?
        .map(|text| {
            text.parse().map_err(|()| {
                ApiError::bad_request(
                    "`message_timestamp_type` must be `CreateTime` or `LogAppendTime`",
                )
            })
        })
        .transpose()?;
    Ok(TopicSettings {
        retention_ms: integer(value, "retention_ms")?,
        retention_bytes: integer(value, "retention_bytes")?,
        segment_bytes: unsigned("segment_bytes")?,
        segment_ms: unsigned("segment_ms")?,
        max_message_bytes,
        durability,
        cleanup_policy,
        timestamp_type,
        ..TopicSettings::default()
    })
}

/// A partition count from a body: 1..=u32::MAX.
fn partitions(body: &Value) -> Result<Option<u32>, ApiError> {
    integer(body, "partitions")?
        .map(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::bad_request("`partitions` must be at least 1"))
        })
        .transpose()
}

impl AdminApi {
    fn topic_json(&self, topic: &TopicDescription, detail: bool) -> Value {
        let effective = &topic.settings;
        let mut out = json!({
            "name": topic.name, "id": hex(&topic.id), "partitions": topic.partitions,
            "internal": topic.internal, "fixed_by": topic.fixed_by,
            "settings": {
                "retention_ms": effective.retention_ms, "retention_bytes": effective.retention_bytes,
                "segment_bytes": effective.segment_bytes, "segment_ms": effective.segment_ms,
                "max_message_bytes": effective.max_message_bytes,
                "durability": effective.durability.to_string(),
            },
            "overridden": settings_json(&effective.overridden),
        });
        let mut messages = 0i64;
        let mut bytes = 0u64;
        let mut partitions = Vec::new();
        for partition in 0..topic.partitions {
            let tp = TopicPartition {
                topic: topic.name.clone(),
                partition,
            };
            let Ok(offsets) = self.engine.log.offsets(&tp) else {
                continue;
            };
            let size = self.broker.partition_size_bytes(&topic.name, partition);
            let count = offsets.high_watermark - offsets.log_start;
            messages += count;
            bytes += size.unwrap_or(0);
            partitions.push(json!({
                "partition": partition, "log_start_offset": offsets.log_start,
                "high_watermark": offsets.high_watermark, "messages": count, "bytes": size,
            }));
        }
        out["messages"] = json!(messages);
        out["bytes"] = json!(bytes);
        if detail {
            out["partition_offsets"] = Value::Array(partitions);
        }
        out
    }

    fn describe(&self, name: &str) -> Result<Value, ApiError> {
        let topic = self.engine.topics.describe_topic(name)?;
        Ok(self.topic_json(&topic, true))
    }

    pub(super) async fn topics(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        let topics = &self.engine.topics;
        match (call.method, path) {
            (&Method::GET, []) => {
                let internal =
                    super::request::query_value(call.query, "internal").as_deref() == Some("true");
                let list = topics.list_topics();
                let shown = list.iter().filter(|t| internal || !t.internal);
                Ok(reply::ok(&Value::Array(
                    shown.map(|t| self.topic_json(t, false)).collect(),
                )))
            }
            (&Method::POST, []) => {
                let body = &call.body;
                object(body)?;
                let name = required(body, "name")?;
                let count = partitions(body)?.unwrap_or(1);
                let settings = parse_settings(body.get("settings"))?;
                topics.create_topic(name, count, settings).await?;
                Ok(reply::json(
                    hyper::StatusCode::CREATED,
                    &self.describe(name)?,
                ))
            }
            (&Method::GET, [name]) => Ok(reply::ok(&self.describe(name)?)),
            (&Method::PUT, [name]) => {
                let body = &call.body;
                object(body)?;
                topics.describe_topic(name)?;
                if let Some(total) = partitions(body)? {
                    topics.create_partitions(name, total).await?;
                }
                if body.get("settings").is_some() {
                    topics
                        .alter_settings(name, parse_settings(body.get("settings"))?)
                        .await?;
                }
                Ok(reply::ok(&self.describe(name)?))
            }
            (&Method::DELETE, [name]) => {
                topics.delete_topic(name).await?;
                Ok(reply::no_content())
            }
            (_, [] | [_]) => Err(ApiError::method_not_allowed()),
            _ => Err(not_found()),
        }
    }

    async fn group_json(&self, group: &str) -> Result<Value, ApiError> {
        let mut offsets = self.engine.offsets.fetch_group(group).await?;
        offsets.sort_by(|a, b| (&a.0.topic, a.0.partition).cmp(&(&b.0.topic, b.0.partition)));
        let mut total_lag = 0i64;
        let mut list = Vec::new();
        for (tp, committed) in offsets {
            let high = self.engine.log.offsets(&tp).ok().map(|o| o.high_watermark);
            let lag = high.map(|high| (high - committed.offset).max(0));
            total_lag += lag.unwrap_or(0);
            list.push(json!({
                "topic": tp.topic, "partition": tp.partition, "committed_offset": committed.offset,
                "high_watermark": high, "lag": lag, "metadata": committed.metadata,
                "commit_time": committed.commit_time,
            }));
        }
        let kafka = self.kafka.as_ref().and_then(|kafka| kafka.group(group));
        let mut members: Vec<Value> = kafka
            .iter()
            .flat_map(|view| &view.members)
            .map(|m| json!({ "member_id": m.member_id, "client_id": m.client_id, "instance_id": m.instance_id, "protocol": "Kafka" }))
            .collect();
        let rocketmq = self.rocketmq_members(group);
        members.extend(rocketmq.iter().map(|client_id| {
            json!({ "member_id": client_id, "client_id": client_id, "instance_id": null, "protocol": "RocketMQ" })
        }));
        Ok(json!({
            "name": group, "lag": total_lag, "offsets": list,
            "state": kafka.as_ref().map(|view| view.state),
            "protocol_type": kafka.as_ref().map(|view| view.protocol_type.clone()),
            "members": members,
        }))
    }

    /// Every group with committed offsets or known to the Kafka coordinator, by name.
    async fn group_names(&self) -> Result<Vec<String>, ApiError> {
        let mut names = self.engine.offsets.groups().await?;
        if let Some(kafka) = &self.kafka {
            names.extend(kafka.group_names());
        }
        if let Some(rocketmq) = &self.rocketmq {
            names.extend(rocketmq.groups());
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Offsets of a group with Kafka members are theirs to move, as in Kafka
    /// (`GROUP_NOT_EMPTY`): changing them under a running consumer would be overwritten by
    /// its next commit.
    fn refuse_active(&self, group: &str) -> Result<(), ApiError> {
        let active = self.kafka.as_ref().and_then(|kafka| kafka.group(group));
        match active {
            Some(view) if !view.members.is_empty() => Err(ApiError::new(
                hyper::StatusCode::CONFLICT,
                format!(
                    "group '{group}' has {} active Kafka members; stop them first",
                    view.members.len()
                ),
            )),
            _ => Ok(()),
        }
    }

    pub(super) async fn groups(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        let offsets = &self.engine.offsets;
        match (call.method, path) {
            (&Method::GET, []) => {
                let mut list = Vec::new();
                for group in self.group_names().await? {
                    list.push(self.group_json(&group).await?);
                }
                Ok(reply::ok(&Value::Array(list)))
            }
            (&Method::GET, [group]) => {
                let known = self
                    .kafka
                    .as_ref()
                    .is_some_and(|k| k.group(group).is_some())
                    || !self.rocketmq_members(group).is_empty();
                if !known && offsets.fetch_group(group).await?.is_empty() {
                    return Err(ApiError::not_found(format!("no group '{group}'")));
                }
                Ok(reply::ok(&self.group_json(group).await?))
            }
            (&Method::DELETE, [group]) => {
                self.refuse_active(group)?;
                if offsets.delete_group(group).await? == 0 {
                    return Err(ApiError::not_found(format!("no group '{group}'")));
                }
                Ok(reply::no_content())
            }
            (&Method::POST, [group, "reset"]) => {
                let reset = self.reset_group(group, &call.body).await?;
                let mut answer = self.group_json(group).await?;
                answer["reset"] = reset;
                Ok(reply::ok(&answer))
            }
            (_, [_, "reset"]) => Err(ApiError::method_not_allowed()),
            (_, [] | [_]) => Err(ApiError::method_not_allowed()),
            _ => Err(not_found()),
        }
    }

    /// The client ids of a RocketMQ consumer group's live members.
    fn rocketmq_members(&self, group: &str) -> Vec<String> {
        self.rocketmq
            .as_ref()
            .map(|rocketmq| rocketmq.members(group))
            .unwrap_or_default()
    }

    /// Stores the new offsets; RocketMQ members are told to follow them. Returns how many
    /// members were told (and how many could not be).
    async fn reset_group(&self, group: &str, body: &Value) -> Result<Value, ApiError> {
        object(body)?;
        self.refuse_active(group)?;
        let topic = required(body, "topic")?;
        let description = self.engine.topics.describe_topic(topic)?;
        let chosen: Vec<u32> = match body.get("partitions") {
            None | Some(Value::Null) => (0..description.partitions).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_u64()
                        .and_then(|p| u32::try_from(p).ok())
                        .filter(|p| *p < description.partitions)
                        .ok_or_else(|| {
                            ApiError::bad_request("`partitions` lists partitions of the topic")
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::bad_request("`partitions` must be an array")),
        };
        let now = crate::broker::topics::now_ms();
        let mut commits = Vec::new();
        for partition in chosen {
            let tp = TopicPartition {
                topic: topic.to_owned(),
                partition,
            };
            let bounds = self.engine.log.offsets(&tp)?;
            let offset = match body.get("to") {
                Some(Value::String(to)) if to == "earliest" => bounds.log_start,
                Some(Value::String(to)) if to == "latest" => bounds.high_watermark,
                Some(Value::Number(n)) => n
                    .as_i64()
                    .filter(|o| (bounds.log_start..=bounds.high_watermark).contains(o))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "`to` must lie in {}..={} for partition {partition}",
                            bounds.log_start, bounds.high_watermark
                        ))
                    })?,
                _ => {
                    return Err(ApiError::bad_request(
                        "`to` is `earliest`, `latest` or an offset",
                    ));
                }
            };
            let committed = CommittedOffset {
                offset,
                metadata: String::new(),
                commit_time: now,
            };
            commits.push((tp, committed));
        }
        if let Some(rocketmq) = self
            .rocketmq
            .as_ref()
            .filter(|_| !self.rocketmq_members(group).is_empty())
        {
            let offsets: Vec<(u32, i64)> = commits
                .iter()
                .map(|(tp, committed)| (tp.partition, committed.offset))
                .collect();
            let outcome = rocketmq.reset_offsets(group, topic, &offsets).await?;
            return Ok(json!({
                "notified_members": outcome.notified, "not_notified_members": outcome.not_notified,
            }));
        }
        self.engine.offsets.commit(group, commits).await?;
        Ok(json!({ "notified_members": 0, "not_notified_members": 0 }))
    }
}
