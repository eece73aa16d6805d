//! The Kafka frontend's face for the broker's admin API: the classic consumer groups the
//! coordinator holds in memory (state and members). Committed offsets live in the engine's
//! offset store and are read there.
//!
//! Invariants: read-only; a snapshot is taken under the coordinator's lock and released at once.

use std::sync::Arc;

use crate::KafkaFrontend;
use crate::coordinator::Coordinator;

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
}

/// One classic group as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    /// Kafka's state name (`Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`).
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

/// The admin handle of one Kafka frontend.
#[derive(Debug, Clone)]
pub struct KafkaAdmin {
    coordinator: Arc<Coordinator>,
}

impl KafkaFrontend {
    pub fn admin(&self) -> KafkaAdmin {
        KafkaAdmin {
            coordinator: self.broker.coordinator.clone(),
        }
    }
}

impl KafkaAdmin {
    /// The group `name`, if the coordinator knows it (it has members or had them since start).
    pub fn group(&self, name: &str) -> Option<GroupView> {
        let described = self.coordinator.describe(name)?;
        Some(GroupView {
            name: name.to_owned(),
            state: described.state.name(),
            protocol_type: described.protocol_type,
            protocol: described.protocol,
            members: described
                .members
                .into_iter()
                .map(|member| MemberView {
                    member_id: member.member_id,
                    instance_id: member.instance_id,
                    client_id: member.client_id,
                })
                .collect(),
        })
    }

    /// The names of every group the coordinator knows.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.coordinator.list().into_iter().map(|g| g.0).collect();
        names.sort();
        names
    }
}
