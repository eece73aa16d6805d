//! Topic configs as Kafka names them, mapped onto the engine's [`TopicSettings`]:
//! DescribeConfigs (every config with its value, source and type), AlterConfigs (replaces the
//! explicit settings) and IncrementalAlterConfigs (SET / DELETE per key, APPEND / SUBTRACT on
//! the list config `cleanup.policy`; on any other key they are INVALID_CONFIG, as in Kafka).
//!
//! Settable: `retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`,
//! `max.message.bytes`, `cleanup.policy` (`delete`, `compact`, `compact,delete`),
//! `delete.retention.ms`, `min.cleanable.dirty.ratio`, `min.compaction.lag.ms`,
//! `message.timestamp.type` (`CreateTime`, `LogAppendTime`), `compression.type` (`producer`,
//! `uncompressed` or `none`, `gzip`, `snappy`, `lz4`, `zstd`: the codec batches are stored
//! with, recompressed on append when it differs), `min.insync.replicas` (only 1: one
//! broker holds the only replica) and `tributary.durability` (`always`, `never` or
//! `interval:<ms>`: when an append is fsynced before the produce is acknowledged).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_configs_response,
    incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use tributary_api::{CleanupPolicy, Durability, EffectiveSettings, TopicSettings};

use super::{Broker, str_bytes};
use crate::error;

pub(crate) const RETENTION_MS: &str = "retention.ms";
pub(crate) const RETENTION_BYTES: &str = "retention.bytes";
pub(crate) const SEGMENT_BYTES: &str = "segment.bytes";
pub(crate) const SEGMENT_MS: &str = "segment.ms";
pub(crate) const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub(crate) const CLEANUP_POLICY: &str = "cleanup.policy";
pub(crate) const DELETE_RETENTION_MS: &str = "delete.retention.ms";
pub(crate) const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
pub(crate) const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub(crate) const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
pub(crate) const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
pub(crate) const COMPRESSION_TYPE: &str = "compression.type";
/// Tributary's own topic config: the durability policy (see the module doc).
pub(crate) const DURABILITY: &str = "tributary.durability";

/// Kafka ConfigResource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka ConfigType values.
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Why a config change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("unknown or read-only topic config `{0}`")]
    UnknownKey(String),
    #[error("invalid value {value:?} for `{key}`")]
    BadValue { key: String, value: String },
    #[error("invalid value {value:?} for `{key}`: {reason}")]
    Refused {
        key: String,
        value: String,
        reason: &'static str,
    },
    #[error("config operation {0} is not supported (SET, DELETE, APPEND and SUBTRACT are)")]
    BadOperation(i8),
    #[error("APPEND and SUBTRACT apply only to list configs; `{0}` is not one")]
    NotAList(String),
}

/// Sets (`Some`) or clears (`None`, back to the broker default) one setting.
pub(crate) fn apply(
    settings: &mut TopicSettings,
    key: &str,
    value: Option<&str>,
) -> Result<(), ConfigError> {
    let bad = || ConfigError::BadValue {
        key: key.to_owned(),
        value: value.unwrap_or_default().to_owned(),
    };
    fn parsed<T: std::str::FromStr>(value: Option<&str>) -> Result<Option<T>, ()> {
        value
            .map(|text| text.trim().parse::<T>().map_err(|_| ()))
            .transpose()
    }
    match key {
        RETENTION_MS => settings.retention_ms = parsed(value).map_err(|()| bad())?,
        RETENTION_BYTES => settings.retention_bytes = parsed(value).map_err(|()| bad())?,
        SEGMENT_BYTES => settings.segment_bytes = parsed(value).map_err(|()| bad())?,
        SEGMENT_MS => settings.segment_ms = parsed(value).map_err(|()| bad())?,
        MAX_MESSAGE_BYTES => settings.max_message_bytes = parsed(value).map_err(|()| bad())?,
        DURABILITY => {
            settings.durability = value
                .map(|text| text.parse::<Durability>().map_err(|_| bad()))
                .transpose()?;
        }
        CLEANUP_POLICY => {
            settings.cleanup_policy = value
                .map(|text| text.parse::<CleanupPolicy>().map_err(|_| bad()))
                .transpose()?;
        }
        DELETE_RETENTION_MS => settings.delete_retention_ms = parsed(value).map_err(|()| bad())?,
        MIN_CLEANABLE_DIRTY_RATIO => {
            settings.min_cleanable_dirty_ratio = parsed(value).map_err(|()| bad())?;
        }
        MIN_COMPACTION_LAG_MS => {
            settings.min_compaction_lag_ms = parsed(value).map_err(|()| bad())?;
        }
        MESSAGE_TIMESTAMP_TYPE => settings.timestamp_type = parsed(value).map_err(|()| bad())?,
        COMPRESSION_TYPE => settings.compression_type = parsed(value).map_err(|()| bad())?,
        MIN_INSYNC_REPLICAS => {
            let replicas: Option<u32> = parsed(value).map_err(|()| bad())?;
            if replicas.is_some_and(|n| n != 1) {
                return Err(ConfigError::Refused {
                    key: key.to_owned(),
                    value: value.unwrap_or_default().to_owned(),
                    reason: "only 1 is valid: this broker holds the only replica of every partition",
                });
            }
            settings.min_insync_replicas = replicas;
        }
        other => return Err(ConfigError::UnknownKey(other.to_owned())),
    }
    Ok(())
}

/// One described config: name, value, whether the topic overrides it, read-only, type.
type Described = (&'static str, String, bool, bool, i8);

fn described(effective: &EffectiveSettings) -> Vec<Described> {
    let explicit = &effective.overridden;
    vec![
        (
            RETENTION_MS,
            effective.retention_ms.to_string(),
            explicit.retention_ms.is_some(),
            false,
            TYPE_LONG,
        ),
        (
            RETENTION_BYTES,
            effective.retention_bytes.to_string(),
            explicit.retention_bytes.is_some(),
            false,
            TYPE_LONG,
        ),
        (
            SEGMENT_BYTES,
            effective.segment_bytes.to_string(),
            explicit.segment_bytes.is_some(),
            false,
            TYPE_INT,
        ),
        (
            SEGMENT_MS,
            effective.segment_ms.to_string(),
            explicit.segment_ms.is_some(),
            false,
            TYPE_LONG,
        ),
        (
            MAX_MESSAGE_BYTES,
            effective.max_message_bytes.to_string(),
            explicit.max_message_bytes.is_some(),
            false,
            TYPE_INT,
        ),
        (
            DURABILITY,
            effective.durability.to_string(),
            explicit.durability.is_some(),
            false,
            TYPE_STRING,
        ),
        (
            CLEANUP_POLICY,
            effective.cleanup_policy.to_string(),
            explicit.cleanup_policy.is_some(),
            false,
            TYPE_LIST,
        ),
        (
            DELETE_RETENTION_MS,
            effective.delete_retention_ms.to_string(),
            explicit.delete_retention_ms.is_some(),
            false,
            TYPE_LONG,
        ),
        (
            MIN_CLEANABLE_DIRTY_RATIO,
            effective.min_cleanable_dirty_ratio.to_string(),
            explicit.min_cleanable_dirty_ratio.is_some(),
            false,
            TYPE_DOUBLE,
        ),
        (
            MIN_COMPACTION_LAG_MS,
            effective.min_compaction_lag_ms.to_string(),
            explicit.min_compaction_lag_ms.is_some(),
            false,
            TYPE_LONG,
        ),
        (
            MESSAGE_TIMESTAMP_TYPE,
            effective.timestamp_type.to_string(),
            explicit.timestamp_type.is_some(),
            false,
            TYPE_STRING,
        ),
        (
            COMPRESSION_TYPE,
            effective.compression_type.to_string(),
            explicit.compression_type.is_some(),
            false,
            TYPE_STRING,
        ),
        (
            MIN_INSYNC_REPLICAS,
            effective.min_insync_replicas.to_string(),
            explicit.min_insync_replicas.is_some(),
            false,
            TYPE_INT,
        ),
    ]
}

/// APPEND (`add`) or SUBTRACT the items of `value` to or from the list config `key`, starting
/// from its effective value; Kafka allows both only on list configs.
fn change_list(
    settings: &mut TopicSettings,
    effective: &EffectiveSettings,
    key: &str,
    value: Option<&str>,
    add: bool,
) -> Result<(), ConfigError> {
    if key != CLEANUP_POLICY {
        return Err(ConfigError::NotAList(key.to_owned()));
    }
    let current = settings.cleanup_policy.unwrap_or(effective.cleanup_policy);
    let (mut delete, mut compact) = (current.delete, current.compact);
    for item in value.unwrap_or_default().split(',').map(str::trim) {
        match item {
            "delete" => delete = add,
            "compact" => compact = add,
            "" => {}
            _ => {
                return Err(ConfigError::BadValue {
                    key: key.to_owned(),
                    value: value.unwrap_or_default().to_owned(),
                });
            }
        }
    }
    if add {
        delete |= current.delete;
        compact |= current.compact;
    } else {
        delete &= current.delete;
        compact &= current.compact;
    }
    if !delete && !compact {
        return Err(ConfigError::Refused {
            key: key.to_owned(),
            value: value.unwrap_or_default().to_owned(),
            reason: "the policy would be empty (it needs `delete`, `compact` or both)",
        });
    }
    settings.cleanup_policy = Some(CleanupPolicy { delete, compact });
    Ok(())
}

fn describe_result(
    resource_type: i8,
    name: StrBytes,
    effective: &EffectiveSettings,
    keys: Option<&[StrBytes]>,
) -> DescribeConfigsResult {
    let default_source = if resource_type == RESOURCE_BROKER {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    };
    let configs = described(effective)
        .into_iter()
        .filter(|(key, ..)| keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == *key)))
        .map(|(key, value, overridden, read_only, config_type)| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(key))
                .with_value(Some(str_bytes(&value)))
                .with_read_only(read_only)
                .with_config_source(if overridden {
                    SOURCE_TOPIC
                } else {
                    default_source
                })
                .with_config_type(config_type)
        })
        .collect();
    DescribeConfigsResult::default()
        .with_resource_type(resource_type)
        .with_resource_name(name)
        .with_configs(configs)
}

impl Broker {
    pub(super) fn describe_configs(
        &self,
        request: DescribeConfigsRequest,
    ) -> DescribeConfigsResponse {
        let results = request
            .resources
            .into_iter()
            .map(|resource| {
                let keys = resource.configuration_keys.as_deref();
                let kind = resource.resource_type;
                match kind {
                    RESOURCE_TOPIC => match self.visible_topic(resource.resource_name.as_str()) {
                        Ok(topic) => {
                            describe_result(kind, resource.resource_name, &topic.settings, keys)
                        }
                        Err(failure) => DescribeConfigsResult::default()
                            .with_error_code(error::code(&failure))
                            .with_error_message(Some(str_bytes(&failure.to_string())))
                            .with_resource_type(kind)
                            .with_resource_name(resource.resource_name),
                    },
                    RESOURCE_BROKER => describe_result(
                        kind,
                        resource.resource_name,
                        &self.engine.topics.defaults(),
                        keys,
                    ),
                    _ => DescribeConfigsResult::default()
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_resource_type(kind)
                        .with_resource_name(resource.resource_name),
                }
            })
            .collect();
        DescribeConfigsResponse::default().with_results(results)
    }

    /// Applies `changes` to a topic's explicit settings, starting from `base`.
    async fn change_topic(
        &self,
        name: &str,
        replace: bool,
        changes: Vec<(String, i8, Option<String>)>,
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        let topic = self
            .visible_topic(name)
            .map_err(|failure| (error::code(&failure), failure.to_string()))?;
        let mut settings = if replace {
            TopicSettings::default()
        } else {
            topic.settings.overridden.clone()
        };
        let invalid =
            |failure: ConfigError| (ResponseError::InvalidConfig.code(), failure.to_string());
        for (key, operation, value) in changes {
            match operation {
                OP_SET => apply(&mut settings, &key, value.as_deref()).map_err(invalid)?,
                OP_DELETE => apply(&mut settings, &key, None).map_err(invalid)?,
                OP_APPEND | OP_SUBTRACT => change_list(
                    &mut settings,
                    &topic.settings,
                    &key,
                    value.as_deref(),
                    operation == OP_APPEND,
                )
                .map_err(invalid)?,
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    ConfigError::BadOperation(other).to_string(),
                ))?,
            }
        }
        if validate_only {
            return Ok(());
        }
        self.engine
            .topics
            .alter_settings(name, settings)
            .await
            .map(|_| ())
            .map_err(|failure| (error::code(&failure), failure.to_string()))
    }

    pub(super) async fn alter_configs(&self, request: AlterConfigsRequest) -> AlterConfigsResponse {
        let mut responses = Vec::with_capacity(request.resources.len());
        for resource in request.resources {
            let changes = resource
                .configs
                .into_iter()
                .map(|config| {
                    (
                        config.name.as_str().to_owned(),
                        OP_SET,
                        config.value.map(|v| v.as_str().to_owned()),
                    )
                })
                .collect();
            let result = if resource.resource_type == RESOURCE_TOPIC {
                self.change_topic(
                    resource.resource_name.as_str(),
                    true,
                    changes,
                    request.validate_only,
                )
                .await
            } else {
                Err((
                    ResponseError::InvalidRequest.code(),
                    "only topic configs can be altered".to_owned(),
                ))
            };
            let (code, message) = result
                .err()
                .map_or((0, None), |(code, text)| (code, Some(str_bytes(&text))));
            responses.push(
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(message)
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name),
            );
        }
        AlterConfigsResponse::default().with_responses(responses)
    }

    pub(super) async fn incremental_alter_configs(
        &self,
        request: IncrementalAlterConfigsRequest,
    ) -> IncrementalAlterConfigsResponse {
        let mut responses = Vec::with_capacity(request.resources.len());
        for resource in request.resources {
            let changes = resource
                .configs
                .into_iter()
                .map(|config| {
                    (
                        config.name.as_str().to_owned(),
                        config.config_operation,
                        config.value.map(|v| v.as_str().to_owned()),
                    )
                })
                .collect();
            let result = if resource.resource_type == RESOURCE_TOPIC {
                self.change_topic(
                    resource.resource_name.as_str(),
                    false,
                    changes,
                    request.validate_only,
                )
                .await
            } else {
                Err((
                    ResponseError::InvalidRequest.code(),
                    "only topic configs can be altered".to_owned(),
                ))
            };
            let (code, message) = result
                .err()
                .map_or((0, None), |(code, text)| (code, Some(str_bytes(&text))));
            responses.push(
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(message)
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name),
            );
        }
        IncrementalAlterConfigsResponse::default().with_responses(responses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_clear() {
        let mut settings = TopicSettings::default();
        apply(&mut settings, RETENTION_MS, Some("60000")).unwrap();
        apply(&mut settings, DURABILITY, Some("interval:50")).unwrap();
        assert_eq!(settings.retention_ms, Some(60_000));
        assert_eq!(settings.durability, Some("interval:50".parse().unwrap()));
        apply(&mut settings, RETENTION_MS, None).unwrap();
        assert_eq!(settings.retention_ms, None);
        assert!(matches!(
            apply(&mut settings, MAX_MESSAGE_BYTES, Some("-1")),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            apply(
                &mut settings,
                "unclean.leader.election.enable",
                Some("true")
            ),
            Err(ConfigError::UnknownKey(_))
        ));
        apply(&mut settings, CLEANUP_POLICY, Some("compact")).unwrap();
        assert_eq!(settings.cleanup_policy, Some(CleanupPolicy::COMPACT));
        assert!(matches!(
            apply(&mut settings, MIN_INSYNC_REPLICAS, Some("2")),
            Err(ConfigError::Refused { .. })
        ));
        apply(&mut settings, MIN_INSYNC_REPLICAS, Some("1")).unwrap();
    }

    #[test]
    fn append_and_subtract_work_on_the_policy_list_only() {
        let defaults = EffectiveSettings {
            retention_ms: 0,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 1,
            max_message_bytes: 1,
            durability: Durability::Always,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 0,
            min_cleanable_dirty_ratio: tributary_api::Ratio::from_millionths(0).unwrap(),
            min_compaction_lag_ms: 0,
            timestamp_type: tributary_api::TimestampType::CreateTime,
            min_insync_replicas: 1,
            compression_type: tributary_api::CompressionType::Producer,
            overridden: TopicSettings::default(),
        };
        let mut settings = TopicSettings::default();
        change_list(
            &mut settings,
            &defaults,
            CLEANUP_POLICY,
            Some("compact"),
            true,
        )
        .unwrap();
        assert_eq!(
            settings.cleanup_policy.unwrap().to_string(),
            "compact,delete"
        );
        change_list(
            &mut settings,
            &defaults,
            CLEANUP_POLICY,
            Some("delete"),
            false,
        )
        .unwrap();
        assert_eq!(settings.cleanup_policy, Some(CleanupPolicy::COMPACT));
        assert!(matches!(
            change_list(
                &mut settings,
                &defaults,
                CLEANUP_POLICY,
                Some("compact"),
                false
            ),
            Err(ConfigError::Refused { .. })
        ));
        assert!(matches!(
            change_list(&mut settings, &defaults, RETENTION_MS, Some("1"), true),
            Err(ConfigError::NotAList(_))
        ));
    }
}
