//! Classic group membership: FindCoordinator (single and batched keys), JoinGroup, SyncGroup,
//! Heartbeat and LeaveGroup (batched from v3), with static members (KIP-345), on the in-memory
//! [`crate::coordinator::Coordinator`].
//!
//! Only the fields of the negotiated version are set in each response; the codec refuses to
//! encode a field the version lacks.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, NODE_ID, RequestContext, str_bytes};
use crate::coordinator::JoinParams;

/// FindCoordinator key type of consumer groups (1 is transactions, which are not served).
const GROUP_KEY_TYPE: i8 = 0;

fn code(result: Result<(), ResponseError>) -> i16 {
    result.err().map_or(0, |error| error.code())
}

fn millis(value: i32) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

impl Broker {
    pub(super) fn find_coordinator(
        &self,
        context: &RequestContext,
        version: i16,
        request: FindCoordinatorRequest,
    ) -> FindCoordinatorResponse {
        let local = (
            NODE_ID,
            str_bytes(&self.settings.advertised_host),
            i32::from(context.local_port),
        );
        // The coordinator of `key`: this broker, or with a cluster the one the key hashes to.
        let coordinator = |key: &str| {
            // Transactions are coordinated by a broker alone on its log (`txn` handlers).
            let transaction = request.key_type == 1 && self.serves_transactions();
            if request.key_type != GROUP_KEY_TYPE && !transaction {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            let Some(cluster) = &self.cluster else {
                return Ok(local.clone());
            };
            let id = cluster
                .coordinator(key)
                .ok_or(ResponseError::CoordinatorNotAvailable)?;
            self.reachable(cluster.as_ref(), context)
                .into_iter()
                .find(|broker| broker.id == id)
                .map(|broker| {
                    (
                        BrokerId(id),
                        str_bytes(&broker.host),
                        i32::from(broker.port),
                    )
                })
                .ok_or(ResponseError::CoordinatorNotAvailable)
        };
        if version >= 4 {
            let coordinators = request
                .coordinator_keys
                .iter()
                .map(|key| {
                    let entry = CoordinatorEntry::default().with_key(key.clone());
                    match coordinator(key.as_str()) {
                        Ok((node, host, port)) => {
                            entry.with_node_id(node).with_host(host).with_port(port)
                        }
                        Err(error) => entry
                            .with_node_id(super::BrokerId(-1))
                            .with_error_code(error.code()),
                    }
                })
                .collect();
            return FindCoordinatorResponse::default().with_coordinators(coordinators);
        }
        match coordinator(request.key.as_str()) {
            Ok((node, host, port)) => FindCoordinatorResponse::default()
                .with_node_id(node)
                .with_host(host)
                .with_port(port),
            Err(error) => FindCoordinatorResponse::default()
                .with_error_code(error.code())
                .with_node_id(super::BrokerId(-1)),
        }
    }

    pub(super) async fn join_group(
        &self,
        context: &RequestContext,
        version: i16,
        client_id: &str,
        request: JoinGroupRequest,
    ) -> JoinGroupResponse {
        let session_timeout = millis(request.session_timeout_ms);
        // v0 has no rebalance timeout; Kafka uses the session timeout then.
        let rebalance_timeout = if version >= 1 {
            millis(request.rebalance_timeout_ms)
        } else {
            session_timeout
        };
        let params = JoinParams {
            group: request.group_id.0.as_str().to_owned(),
            member_id: request.member_id.as_str().to_owned(),
            client_id: client_id.to_owned(),
            instance_id: instance(version >= 5, request.group_instance_id.as_ref()),
            requires_known_member_id: version >= 4,
            protocol_type: request.protocol_type.as_str().to_owned(),
            protocols: request
                .protocols
                .into_iter()
                .map(|protocol| (protocol.name.as_str().to_owned(), protocol.metadata))
                .collect(),
            session_timeout,
            rebalance_timeout,
        };
        let group = params.group.clone();
        // A group new to this coordinator carries on from the generation its previous one
        // reached (kept by the cloud engine; the local engine keeps none).
        match self.engine.offsets.group_generation(&group).await {
            Ok(Some(stored)) => self.coordinator.raise_generation(&group, stored),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%group, %error, "could not read the group's stored generation");
            }
        }
        let outcome = self.coordinator.join(params, &context.shutdown).await;
        if outcome.error.is_none()
            && outcome.member_id == outcome.leader
            && let Err(error) = self
                .engine
                .offsets
                .record_group_generation(&group, outcome.generation)
                .await
        {
            tracing::warn!(%group, %error, "could not record the group's generation");
        }
        let members = outcome
            .members
            .into_iter()
            .map(|(id, instance_id, metadata)| {
                JoinGroupResponseMember::default()
                    .with_member_id(str_bytes(&id))
                    .with_group_instance_id(instance_id.as_deref().map(str_bytes))
                    .with_metadata(metadata)
            })
            .collect();
        let mut response = JoinGroupResponse::default()
            .with_error_code(outcome.error.map_or(0, |error| error.code()))
            .with_generation_id(outcome.generation)
            .with_protocol_name(Some(str_bytes(&outcome.protocol)))
            .with_leader(str_bytes(&outcome.leader))
            .with_member_id(str_bytes(&outcome.member_id))
            .with_members(members);
        if version >= 7 {
            response.protocol_type = Some(str_bytes(&outcome.protocol_type));
        }
        response
    }

    pub(super) async fn sync_group(
        &self,
        context: &RequestContext,
        version: i16,
        request: SyncGroupRequest,
    ) -> SyncGroupResponse {
        let assignments = request
            .assignments
            .into_iter()
            .map(|entry| (entry.member_id.as_str().to_owned(), entry.assignment))
            .collect();
        let outcome = self
            .coordinator
            .sync(
                request.group_id.0.as_str(),
                request.generation_id,
                request.member_id.as_str(),
                instance(version >= 3, request.group_instance_id.as_ref()).as_deref(),
                assignments,
                &context.shutdown,
            )
            .await;
        match outcome {
            Ok((protocol_type, protocol, assignment)) => {
                let mut response = SyncGroupResponse::default().with_assignment(assignment);
                if version >= 5 {
                    response.protocol_type = Some(str_bytes(&protocol_type));
                    response.protocol_name = Some(str_bytes(&protocol));
                }
                response
            }
            Err(error) => SyncGroupResponse::default()
                .with_error_code(error.code())
                .with_assignment(Bytes::new()),
        }
    }

    pub(super) fn heartbeat(&self, version: i16, request: HeartbeatRequest) -> HeartbeatResponse {
        let instance_id = instance(version >= 3, request.group_instance_id.as_ref());
        let result = self.coordinator.heartbeat(
            request.group_id.0.as_str(),
            request.generation_id,
            request.member_id.as_str(),
            instance_id.as_deref(),
        );
        HeartbeatResponse::default().with_error_code(code(result))
    }

    pub(super) fn leave_group(
        &self,
        version: i16,
        request: LeaveGroupRequest,
    ) -> LeaveGroupResponse {
        let group = request.group_id.0.as_str();
        if version < 3 {
            let result = self
                .coordinator
                .leave(group, request.member_id.as_str(), None);
            return LeaveGroupResponse::default().with_error_code(code(result));
        }
        // v3+ (KIP-345) batch members, each by member id and/or static instance id.
        let members = request
            .members
            .into_iter()
            .map(|identity| {
                let instance_id = identity.group_instance_id.as_ref().map(|id| id.as_str());
                let result =
                    self.coordinator
                        .leave(group, identity.member_id.as_str(), instance_id);
                MemberResponse::default()
                    .with_member_id(identity.member_id)
                    .with_group_instance_id(identity.group_instance_id)
                    .with_error_code(code(result))
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    }
}

/// The static instance id of a request, at versions that carry one.
fn instance(carried: bool, instance_id: Option<&StrBytes>) -> Option<String> {
    instance_id
        .filter(|_| carried)
        .map(|id| id.as_str().to_owned())
}
