//! Topic configs as Kafka names them, mapped onto the engine's [`TopicSettings`]:
//! DescribeConfigs (every config with its value, source and type), AlterConfigs (replaces the
//! explicit settings) and IncrementalAlterConfigs (SET / DELETE per key).
//!
//! Settable: `retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`,
//! `max.message.bytes` and `tributary.durability` (`always`, `never` or `interval:<ms>`: when an
//! append is fsynced before the produce is acknowledged). Read-only, reported for tools that
//! expect them: `cleanup.policy=delete`, `message.timestamp.type=CreateTime`.

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
use tributary_api::{Durability, EffectiveSettings, TopicSettings};

use super::{Broker, str_bytes};
use crate::error;

pub(crate) const RETENTION_MS: &str = "retention.ms";
pub(crate) const RETENTION_BYTES: &str = "retention.bytes";
pub(crate) const SEGMENT_BYTES: &str = "segment.bytes";
pub(crate) const SEGMENT_MS: &str = "segment.ms";
pub(crate) const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
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
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// Why a config change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("unknown or read-only topic config `{0}`")]
    UnknownKey(String),
    #[error("invalid value {value:?} for `{key}`")]
    BadValue { key: String, value: String },
    #[error("config operation {0} is not supported (only SET and DELETE)")]
    BadOperation(i8),
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
            "cleanup.policy",
            "delete".to_owned(),
            false,
            true,
            TYPE_STRING,
        ),
        (
            "message.timestamp.type",
            "CreateTime".to_owned(),
            false,
            true,
            TYPE_STRING,
        ),
    ]
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
        for (key, operation, value) in changes {
            let value = match operation {
                OP_SET => value,
                OP_DELETE => None,
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    ConfigError::BadOperation(other).to_string(),
                ))?,
            };
            apply(&mut settings, &key, value.as_deref())
                .map_err(|failure| (ResponseError::InvalidConfig.code(), failure.to_string()))?;
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
            apply(&mut settings, "cleanup.policy", Some("compact")),
            Err(ConfigError::UnknownKey(_))
        ));
    }
}
