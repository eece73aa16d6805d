//! Topic administration: CreateTopics (with configs and validate-only), DeleteTopics (by name,
//! or by id from v6) and CreatePartitions. One broker, so the only valid replication factor is
//! 1 (or -1, "the default") and explicit replica assignments may name only broker 0.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use tributary_api::{EngineError, EngineResult, TopicDescription, TopicSettings};
use uuid::Uuid;

use super::configs::apply;
use super::{Broker, NODE_ID, str_bytes, validate_topic_name};
use crate::error;

/// A refusal: Kafka error code and message.
type Refusal = (i16, String);

fn refusal(failure: &EngineError) -> Refusal {
    (error::code(failure), failure.to_string())
}

impl Broker {
    /// A topic Kafka clients may see (internal AMQP queue logs are hidden).
    pub(crate) fn visible_topic(&self, name: &str) -> EngineResult<TopicDescription> {
        self.engine.topics.describe_topic(name).and_then(|topic| {
            if topic.internal {
                Err(EngineError::UnknownTopic(name.to_owned()))
            } else {
                Ok(topic)
            }
        })
    }

    pub(super) async fn create_topics(&self, request: CreateTopicsRequest) -> CreateTopicsResponse {
        let mut topics = Vec::with_capacity(request.topics.len());
        for wanted in request.topics {
            let name = wanted.name.clone();
            let result = match self.create_one(wanted, request.validate_only).await {
                Ok((partitions, id)) => CreatableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
                Err((code, message)) => CreatableTopicResult::default()
                    .with_name(name)
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(&message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            };
            topics.push(result);
        }
        CreateTopicsResponse::default().with_topics(topics)
    }

    async fn create_one(
        &self,
        wanted: CreatableTopic,
        validate_only: bool,
    ) -> Result<(i32, Uuid), Refusal> {
        let name = wanted.name.0.as_str();
        validate_topic_name(name).map_err(|failure| refusal(&failure))?;
        if !matches!(wanted.replication_factor, -1 | 1) {
            return Err((
                ResponseError::InvalidReplicationFactor.code(),
                format!(
                    "replication factor {} on a one-broker cluster",
                    wanted.replication_factor
                ),
            ));
        }
        let partitions = if wanted.assignments.is_empty() {
            match wanted.num_partitions {
                -1 => self.settings.default_partitions,
                count => u32::try_from(count)
                    .ok()
                    .filter(|count| *count > 0)
                    .ok_or((
                        ResponseError::InvalidPartitions.code(),
                        format!("{count} partitions"),
                    ))?,
            }
        } else {
            let only_this_broker = wanted
                .assignments
                .iter()
                .all(|assignment| assignment.broker_ids.iter().all(|id| *id == NODE_ID));
            if !only_this_broker {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    "replicas may only be on broker 0".to_owned(),
                ));
            }
            u32::try_from(wanted.assignments.len()).unwrap_or(u32::MAX)
        };
        let mut settings = TopicSettings::default();
        for config in &wanted.configs {
            apply(
                &mut settings,
                config.name.as_str(),
                config.value.as_ref().map(|v| v.as_str()),
            )
            .map_err(|failure| (ResponseError::InvalidConfig.code(), failure.to_string()))?;
        }
        if self.engine.topics.describe_topic(name).is_ok() {
            return Err(refusal(&EngineError::TopicExists(name.to_owned())));
        }
        let count = i32::try_from(partitions).unwrap_or(i32::MAX);
        if validate_only {
            self.engine
                .topics
                .check_partition_limits(name, partitions)
                .map_err(|failure| refusal(&failure))?;
            return Ok((count, Uuid::nil()));
        }
        let topic = self
            .engine
            .topics
            .create_topic(name, partitions, settings)
            .await
            .map_err(|failure| refusal(&failure))?;
        Ok((count, Uuid::from_bytes(topic.id)))
    }

    pub(super) async fn delete_topics(
        &self,
        version: i16,
        request: DeleteTopicsRequest,
    ) -> DeleteTopicsResponse {
        // v6 lists topics by name or id; earlier versions list names.
        let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
            request
                .topics
                .into_iter()
                .map(|topic| (topic.name, topic.topic_id))
                .collect()
        } else {
            request
                .topic_names
                .into_iter()
                .map(|name| (Some(name), Uuid::nil()))
                .collect()
        };
        let mut responses = Vec::with_capacity(targets.len());
        for (name, id) in targets {
            let found = match &name {
                Some(name) => self.visible_topic(name.0.as_str()),
                None => self.topic_by_id(id),
            };
            let outcome = match found {
                Ok(topic) => self
                    .engine
                    .topics
                    .delete_topic(&topic.name)
                    .await
                    .map(|()| topic),
                Err(failure) => Err(failure),
            };
            let result = DeletableTopicResult::default().with_name(name);
            responses.push(match outcome {
                Ok(topic) => {
                    let result = result.with_topic_id(Uuid::from_bytes(topic.id));
                    if version >= 6 && result.name.is_none() {
                        result.with_name(Some(super::topic_name(&topic.name)))
                    } else {
                        result
                    }
                }
                Err(failure) => result
                    .with_topic_id(id)
                    .with_error_code(error::code(&failure))
                    .with_error_message(Some(str_bytes(&failure.to_string()))),
            });
        }
        DeleteTopicsResponse::default().with_responses(responses)
    }

    pub(super) async fn create_partitions(
        &self,
        request: CreatePartitionsRequest,
    ) -> CreatePartitionsResponse {
        let mut results = Vec::with_capacity(request.topics.len());
        for wanted in request.topics {
            let name = wanted.name.0.as_str().to_owned();
            let outcome: Result<(), Refusal> = async {
                let topic = self
                    .visible_topic(&name)
                    .map_err(|failure| refusal(&failure))?;
                // Checked here too so that validate_only gives the engine's answer.
                if let Some(fixed) = topic.growth_refusal() {
                    return Err(refusal(&fixed));
                }
                let total = u32::try_from(wanted.count)
                    .ok()
                    .filter(|total| *total > topic.partitions)
                    .ok_or_else(|| {
                        refusal(&EngineError::InvalidPartitions {
                            requested: u32::try_from(wanted.count).unwrap_or(0),
                            current: topic.partitions,
                        })
                    })?;
                if request.validate_only {
                    return self
                        .engine
                        .topics
                        .check_partition_limits(&name, total)
                        .map_err(|failure| refusal(&failure));
                }
                self.engine
                    .topics
                    .create_partitions(&name, total)
                    .await
                    .map(|_| ())
                    .map_err(|failure| refusal(&failure))
            }
            .await;
            let result = CreatePartitionsTopicResult::default().with_name(wanted.name);
            results.push(match outcome {
                Ok(()) => result,
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(&message))),
            });
        }
        CreatePartitionsResponse::default().with_results(results)
    }
}
