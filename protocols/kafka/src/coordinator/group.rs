//! One classic group's state machine (see the parent module for states and invariants).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{GroupState, JoinOutcome, SyncOutcome};

#[derive(Debug)]
pub(super) struct Member {
    pub(super) client_id: String,
    /// KIP-345 static membership: the `group.instance.id` this member holds.
    pub(super) instance_id: Option<String>,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) last_seen: Instant,
    /// Rejoined in the current round.
    pub(super) joined: bool,
    pub(super) join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    pub(super) assignment: Bytes,
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: String,
    pub(super) protocol: String,
    pub(super) leader: String,
    pub(super) members: BTreeMap<String, Member>,
    /// KIP-394 ids handed out but not joined yet, with when they expire.
    pub(super) pending: HashMap<String, Instant>,
    /// Static members: group instance id -> the member id currently holding it.
    pub(super) instances: HashMap<String, String>,
    pub(super) rebalance_deadline: Instant,
}

impl Group {
    pub(super) fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            rebalance_deadline: Instant::now(),
        }
    }

    /// Starts a new join round: everyone must rejoin; pending syncs are superseded.
    pub(super) fn prepare_rebalance(&mut self, now: Instant) {
        for member in self.members.values_mut() {
            member.joined = false;
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(Err(ResponseError::RebalanceInProgress));
            }
        }
        let longest = self
            .members
            .values()
            .map(|member| member.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = now + longest;
        self.state = GroupState::PreparingRebalance;
    }

    /// Ends the join round if everyone joined, or `force`d at the deadline (dropping laggards).
    pub(super) fn try_complete_join(&mut self, force: bool) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|member| member.joined);
        if !all_joined && !force {
            return;
        }
        self.members.retain(|_, member| member.joined);
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol.clear();
            self.leader.clear();
            return;
        }
        self.protocol = self.select_protocol();
        if !self.members.contains_key(&self.leader) {
            self.leader = self.members.keys().next().cloned().unwrap_or_default();
        }
        self.state = GroupState::CompletingRebalance;
        let everyone: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, member)| {
                let metadata = metadata_for(member, &self.protocol);
                (id.clone(), member.instance_id.clone(), metadata)
            })
            .collect();
        for (id, member) in &mut self.members {
            member.assignment = Bytes::new();
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinOutcome {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: self.leader.clone(),
                    member_id: id.clone(),
                    members: if *id == self.leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// Kafka's rule: each member votes for its most preferred protocol that all members
    /// support; the protocol with the most votes wins (ties: the first in the leader's order).
    pub(super) fn select_protocol(&self) -> String {
        let supported_by_all = |name: &str| {
            self.members
                .values()
                .all(|member| member.protocols.iter().any(|(p, _)| p == name))
        };
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(p, _)| supported_by_all(p)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, count)| *count)
            .map(|(name, _)| name.to_owned())
            .unwrap_or_default()
    }

    /// Whether a joining member's protocols fit the group's.
    pub(super) fn accepts(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        protocol_type == self.protocol_type
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|member| member.protocols.iter().any(|(p, _)| p == name))
            })
    }

    pub(super) fn assignment_of(&self, member_id: &str) -> SyncOutcome {
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        Ok((
            self.protocol_type.clone(),
            self.protocol.clone(),
            member.assignment.clone(),
        ))
    }

    /// A request naming `instance_id` must come from the member that holds it (KIP-345).
    pub(super) fn check_instance(
        &self,
        instance_id: Option<&str>,
        member_id: &str,
    ) -> Result<(), ResponseError> {
        match instance_id.map(|instance| self.instances.get(instance)) {
            None => Ok(()),
            Some(None) => Err(ResponseError::UnknownMemberId),
            Some(Some(holder)) if holder == member_id => Ok(()),
            Some(Some(_)) => Err(ResponseError::FencedInstanceId),
        }
    }

    /// A static member rejoining without its member id (a restart): it takes over the old
    /// member's place, assignment and leadership under `new_id`; the old id is fenced.
    pub(super) fn replace_static_member(&mut self, old_id: &str, new_id: &str, instance: &str) {
        if let Some(mut member) = self.members.remove(old_id) {
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinOutcome::failed(
                    ResponseError::FencedInstanceId,
                    old_id.to_owned(),
                ));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(Err(ResponseError::FencedInstanceId));
            }
            self.members.insert(new_id.to_owned(), member);
        }
        if self.leader == old_id {
            new_id.clone_into(&mut self.leader);
        }
        self.instances
            .insert(instance.to_owned(), new_id.to_owned());
    }

    pub(super) fn remove_member(&mut self, member_id: &str, now: Instant) {
        self.instances.retain(|_, holder| holder != member_id);
        if let Some(mut member) = self.members.remove(member_id) {
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinOutcome::failed(
                    ResponseError::UnknownMemberId,
                    member_id.to_owned(),
                ));
            }
            if self.state != GroupState::PreparingRebalance {
                self.prepare_rebalance(now);
            }
            self.try_complete_join(false);
        }
    }
}

pub(super) fn metadata_for(member: &Member, protocol: &str) -> Bytes {
    member
        .protocols
        .iter()
        .find(|(name, _)| name == protocol)
        .map(|(_, metadata)| metadata.clone())
        .unwrap_or_default()
}
