//! FindCoordinator under `kafka.authorizer`: DESCRIBE on each group (key type 0) or
//! transactional id (key type 1) it names, refused with GROUP_AUTHORIZATION_FAILED or
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//!
//! Invariants: the single-key form (v0-v3) is answered whole when refused; the batched form
//! (v4+) keeps the allowed keys for the handler and answers each refused key on its own, as Kafka
//! answers per key, so one denied key never hides the coordinators of the others.

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::Coordinator;

use super::transactional::{TRANSACTION_KEY_TYPE, TRANSACTIONAL_ID_DENIED};
use super::*;

/// FindCoordinator's key type of a consumer group.
const GROUP_KEY_TYPE: i8 = 0;

impl Broker {
    pub(super) async fn guard_find_coordinator(
        &self,
        context: &RequestContext,
        mut request: FindCoordinatorRequest,
    ) -> Guard {
        let denied_code = match request.key_type {
            GROUP_KEY_TYPE => GROUP_DENIED,
            TRANSACTION_KEY_TYPE => TRANSACTIONAL_ID_DENIED,
            // Other key types are refused by the handler; nothing here to authorize.
            _ => return Guard::Serve(KafkaRequest::FindCoordinator(request), Patch::None),
        };
        if request.coordinator_keys.is_empty() {
            let key = request.key.to_string();
            if self.may_find(context, request.key_type, &key).await {
                return Guard::Serve(KafkaRequest::FindCoordinator(request), Patch::None);
            }
            return Guard::Answer(KafkaResponse::FindCoordinator(
                self.find_coordinator_refused(&request, denied_code),
            ));
        }
        let mut kept = Vec::with_capacity(request.coordinator_keys.len());
        let mut denied = Vec::new();
        for key in std::mem::take(&mut request.coordinator_keys) {
            if self.may_find(context, request.key_type, &key).await {
                kept.push(key);
            } else {
                denied.push(
                    Coordinator::default()
                        .with_key(key)
                        .with_node_id(kafka_protocol::messages::BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(denied_code)
                        .with_error_message(message(denied_code)),
                );
            }
        }
        request.coordinator_keys = kept;
        Guard::Serve(
            KafkaRequest::FindCoordinator(request),
            Patch::FindCoordinator(denied),
        )
    }

    /// DESCRIBE on the group or transactional id `key` (key types checked by the caller).
    async fn may_find(&self, context: &RequestContext, key_type: i8, key: &str) -> bool {
        if key_type == TRANSACTION_KEY_TYPE {
            self.may_use_transactional_id(context, operation::DESCRIBE, key)
                .await
        } else {
            self.on_group(context, operation::DESCRIBE, key).await
        }
    }

    pub(super) fn find_coordinator_refused(
        &self,
        request: &FindCoordinatorRequest,
        code: i16,
    ) -> FindCoordinatorResponse {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(kafka_protocol::messages::BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(message(code))
            })
            .collect();
        FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message(message(code))
            .with_node_id(kafka_protocol::messages::BrokerId(-1))
            .with_port(-1)
            .with_coordinators(coordinators)
    }
}
