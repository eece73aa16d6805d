//! The classic consumer-group coordinator, in memory (committed offsets live in the engine's
//! offset store; group membership does not survive a restart, as clients simply rejoin).
//!
//! States: `Empty` -> `PreparingRebalance` (waiting for every known member to (re)join, at most
//! the largest rebalance timeout) -> `CompletingRebalance` (joined; waiting for the leader's
//! SyncGroup) -> `Stable`. Any join, leave or session expiry starts a new round.
//!
//! Invariants worth naming:
//! - The generation increases by one per completed join round; requests carrying another
//!   generation get ILLEGAL_GENERATION (fencing zombies).
//! - A member id is handed out only by this coordinator (KIP-394: first join of v4+ gets
//!   MEMBER_ID_REQUIRED with the id); an unknown id gets UNKNOWN_MEMBER_ID.
//! - Static members (KIP-345) hold a `group.instance.id`; one member id holds each instance id
//!   at a time. A restarted static member takes its old place (and, in a stable group with an
//!   unchanged subscription, its old assignment without a rebalance); requests from the replaced
//!   id get FENCED_INSTANCE_ID.
//! - Every member waiting in JoinGroup or SyncGroup gets exactly one answer: the round's
//!   result, or REBALANCE_IN_PROGRESS when a new round supersedes it.
//! - Lock discipline: one mutex over all groups, never held across an await.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often session timeouts and rebalance deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

mod assignor;
pub(crate) mod consumer;
mod consumer_group;
mod group;

use consumer::ConsumerGroupSettings;
use consumer_group::ConsumerGroup;
use group::{Group, Member, metadata_for};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

/// A member's JoinGroup request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub(crate) struct JoinParams {
    pub(crate) group: String,
    pub(crate) member_id: String,
    pub(crate) client_id: String,
    /// KIP-345 `group.instance.id` (JoinGroup v5+).
    pub(crate) instance_id: Option<String>,
    /// Whether the client speaks KIP-394 (JoinGroup v4+).
    pub(crate) requires_known_member_id: bool,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
}

/// The outcome of a join round for one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JoinOutcome {
    pub(crate) error: Option<ResponseError>,
    pub(crate) generation: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// Filled for the leader only: every member (id, static instance id) with its metadata for
    /// the chosen protocol.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn failed(error: ResponseError, member_id: String) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            member_id,
            ..Self::default()
        }
    }
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribedMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) metadata: Bytes,
    pub(crate) assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupDescription {
    pub(crate) state: GroupState,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) members: Vec<DescribedMember>,
}

impl GroupState {
    /// Kafka's name for the state, as ListGroups and DescribeGroups report it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A SyncGroup answer: the member's assignment or an error.
pub(crate) type SyncOutcome = Result<(String, String, Bytes), ResponseError>;

/// All classic and KIP-848 consumer groups of this broker (a group id is in one map at most).
#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    /// KIP-848 groups ([`consumer`]); locked after `groups` when both are needed.
    consumer: Mutex<HashMap<String, ConsumerGroup>>,
    consumer_settings: ConsumerGroupSettings,
    sweeper_started: AtomicBool,
}

impl Coordinator {
    pub(crate) fn new(consumer_settings: ConsumerGroupSettings) -> Self {
        Self {
            consumer_settings,
            ..Self::default()
        }
    }

    /// The consumer-group settings (heartbeat interval, session timeout, size).
    pub(crate) fn consumer_settings(&self) -> &ConsumerGroupSettings {
        &self.consumer_settings
    }

    /// Starts the background sweep (session expiry, rebalance deadlines) once.
    pub(crate) fn ensure_sweeper(self: &Arc<Self>, shutdown: &CancellationToken) {
        if self.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let coordinator = Arc::downgrade(self);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(coordinator) = coordinator.upgrade() else {
                    return;
                };
                let now = Instant::now();
                coordinator.sweep(now);
                coordinator.sweep_consumers(now);
            }
        });
    }

    /// Expires silent members and pending ids, and ends join rounds past their deadline.
    fn sweep(&self, now: Instant) {
        let mut groups = self.groups.lock();
        for group in groups.values_mut() {
            group.pending.retain(|_, expires| *expires > now);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, member)| {
                    let waiting = member
                        .join_waiter
                        .as_ref()
                        .is_some_and(|waiter| !waiter.is_closed());
                    !waiting && member.last_seen + member.session_timeout < now
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "kafka group member session expired");
                group.remove_member(&id, now);
            }
            if group.state == GroupState::PreparingRebalance && group.rebalance_deadline <= now {
                group.try_complete_join(true);
            }
        }
    }

    /// Raises `group`'s generation to `generation` (what a previous coordinator reached, from
    /// the offset store), creating the group if unknown; never lowers it. Members of an older
    /// generation held here then get ILLEGAL_GENERATION and rejoin.
    pub(crate) fn raise_generation(&self, group: &str, generation: i32) {
        let mut groups = self.groups.lock();
        let group = groups.entry(group.to_owned()).or_insert_with(Group::new);
        if group.generation < generation {
            group.generation = generation;
        }
    }

    pub(crate) async fn join(
        self: &Arc<Self>,
        params: JoinParams,
        shutdown: &CancellationToken,
    ) -> JoinOutcome {
        self.ensure_sweeper(shutdown);
        let receiver = {
            let now = Instant::now();
            let mut groups = self.groups.lock();
            if let Err(error) = self.yield_to_classic(&params.group) {
                return JoinOutcome::failed(error, params.member_id);
            }
            let group = groups
                .entry(params.group.clone())
                .or_insert_with(Group::new);
            let mut member_id = params.member_id.clone();
            if let Some(instance) = &params.instance_id {
                let holder = group.instances.get(instance).cloned();
                match holder {
                    Some(holder) if member_id.is_empty() => {
                        member_id = new_member_id(&params.client_id);
                        let was_leader = group.leader == holder;
                        let unchanged = group
                            .members
                            .get(&holder)
                            .is_some_and(|member| member.protocols == params.protocols);
                        group.replace_static_member(&holder, &member_id, instance);
                        // A known static member back with the same subscription does not
                        // disturb a stable group: it gets the current generation back.
                        if group.state == GroupState::Stable && unchanged && !was_leader {
                            if let Some(member) = group.members.get_mut(&member_id) {
                                member.last_seen = now;
                                member.session_timeout = params.session_timeout;
                            }
                            return JoinOutcome {
                                error: None,
                                generation: group.generation,
                                protocol_type: group.protocol_type.clone(),
                                protocol: group.protocol.clone(),
                                leader: group.leader.clone(),
                                member_id,
                                members: Vec::new(),
                            };
                        }
                    }
                    None if member_id.is_empty() => {
                        member_id = new_member_id(&params.client_id);
                        group.instances.insert(instance.clone(), member_id.clone());
                    }
                    Some(holder) if holder != member_id => {
                        return JoinOutcome::failed(ResponseError::FencedInstanceId, member_id);
                    }
                    Some(_) => {}
                    None => return JoinOutcome::failed(ResponseError::UnknownMemberId, member_id),
                }
            } else if member_id.is_empty() {
                member_id = new_member_id(&params.client_id);
                if params.requires_known_member_id {
                    group
                        .pending
                        .insert(member_id.clone(), now + params.session_timeout);
                    return JoinOutcome::failed(ResponseError::MemberIdRequired, member_id);
                }
            } else if !group.members.contains_key(&member_id)
                && group.pending.remove(&member_id).is_none()
            {
                return JoinOutcome::failed(ResponseError::UnknownMemberId, member_id);
            }
            if !group.accepts(&params.protocol_type, &params.protocols) {
                if !group.members.contains_key(&member_id) {
                    group.instances.retain(|_, holder| *holder != member_id);
                }
                return JoinOutcome::failed(ResponseError::InconsistentGroupProtocol, member_id);
            }
            if group.members.is_empty() {
                group.protocol_type = params.protocol_type.clone();
            }
            let (sender, receiver) = oneshot::channel();
            let member = group
                .members
                .entry(member_id.clone())
                .or_insert_with(|| Member {
                    client_id: params.client_id.clone(),
                    instance_id: params.instance_id.clone(),
                    protocols: Vec::new(),
                    session_timeout: params.session_timeout,
                    rebalance_timeout: params.rebalance_timeout,
                    last_seen: now,
                    joined: false,
                    join_waiter: None,
                    sync_waiter: None,
                    assignment: Bytes::new(),
                });
            member.protocols = params.protocols;
            member.session_timeout = params.session_timeout;
            member.rebalance_timeout = params.rebalance_timeout;
            member.last_seen = now;
            member.joined = true;
            if let Some(old) = member.join_waiter.replace(sender) {
                let _ = old.send(JoinOutcome::failed(
                    ResponseError::RebalanceInProgress,
                    member_id.clone(),
                ));
            }
            if group.state != GroupState::PreparingRebalance {
                group.prepare_rebalance(now);
                // `prepare_rebalance` cleared every `joined`; this member just did.
                if let Some(member) = group.members.get_mut(&member_id) {
                    member.joined = true;
                }
            }
            group.try_complete_join(false);
            receiver
        };
        tokio::select! {
            outcome = receiver => outcome.unwrap_or_else(|_| {
                JoinOutcome::failed(ResponseError::RebalanceInProgress, params.member_id)
            }),
            () = shutdown.cancelled() => {
                JoinOutcome::failed(ResponseError::CoordinatorNotAvailable, params.member_id)
            }
        }
    }

    pub(crate) async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        shutdown: &CancellationToken,
    ) -> SyncOutcome {
        let receiver = {
            let mut groups = self.groups.lock();
            let group = groups
                .get_mut(group_id)
                .ok_or(ResponseError::UnknownMemberId)?;
            group.check_instance(instance_id, member_id)?;
            let Some(member) = group.members.get_mut(member_id) else {
                return Err(ResponseError::UnknownMemberId);
            };
            member.last_seen = Instant::now();
            if generation != group.generation {
                return Err(ResponseError::IllegalGeneration);
            }
            match group.state {
                GroupState::Empty | GroupState::PreparingRebalance => {
                    return Err(ResponseError::RebalanceInProgress);
                }
                GroupState::Stable => return group.assignment_of(member_id),
                GroupState::CompletingRebalance => {}
            }
            if member_id == group.leader {
                for (id, assignment) in assignments {
                    if let Some(target) = group.members.get_mut(&id) {
                        target.assignment = assignment;
                    }
                }
                group.state = GroupState::Stable;
                let ids: Vec<String> = group.members.keys().cloned().collect();
                for id in ids {
                    let answer = group.assignment_of(&id);
                    if let Some(waiter) = group
                        .members
                        .get_mut(&id)
                        .and_then(|member| member.sync_waiter.take())
                    {
                        let _ = waiter.send(answer);
                    }
                }
                return group.assignment_of(member_id);
            }
            let (sender, receiver) = oneshot::channel();
            if let Some(member) = group.members.get_mut(member_id) {
                member.sync_waiter = Some(sender);
            }
            receiver
        };
        tokio::select! {
            outcome = receiver => outcome.unwrap_or(Err(ResponseError::RebalanceInProgress)),
            () = shutdown.cancelled() => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let mut groups = self.groups.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        group.check_instance(instance_id, member_id)?;
        let state = group.state;
        let current = group.generation;
        let member = group
            .members
            .get_mut(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        member.last_seen = Instant::now();
        if generation != current {
            return Err(ResponseError::IllegalGeneration);
        }
        match state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Removes a member, named by member id, by static instance id, or both (then they must
    /// match).
    pub(crate) fn leave(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let mut groups = self.groups.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        let leaving = match instance_id {
            Some(instance) => {
                let holder = group
                    .instances
                    .get(instance)
                    .cloned()
                    .ok_or(ResponseError::UnknownMemberId)?;
                if !member_id.is_empty() && holder != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
                holder
            }
            None => member_id.to_owned(),
        };
        if !group.members.contains_key(&leaving) {
            return Err(ResponseError::UnknownMemberId);
        }
        group.remove_member(&leaving, Instant::now());
        Ok(())
    }

    /// Checks an OffsetCommit's (or, `transactional`, a TxnOffsetCommit's) member and
    /// generation as Kafka's classic group coordinator does: generation -1 with no member (and
    /// no instance id) is a commit from outside the group protocol (standalone consumers, admin
    /// tools), accepted only while the group is empty unless transactional (older
    /// TxnOffsetCommits carry no member); otherwise the member must be in the group
    /// (UNKNOWN_MEMBER_ID: a member removed since, whose revoke callback commits late), of the
    /// current generation (ILLEGAL_GENERATION), and, unless transactional, not between join
    /// and sync (REBALANCE_IN_PROGRESS).
    pub(crate) fn validate_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        transactional: bool,
    ) -> Result<(), ResponseError> {
        let groups = self.groups.lock();
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return match groups.get(group_id) {
                Some(group) if !transactional && group.state != GroupState::Empty => {
                    Err(ResponseError::UnknownMemberId)
                }
                _ => Ok(()),
            };
        }
        let group = groups.get(group_id).ok_or(ResponseError::UnknownMemberId)?;
        group.check_instance(instance_id, member_id)?;
        if !group.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        // Members commit while rejoining (on revoke), so PreparingRebalance accepts commits of
        // the current generation; between join and sync the assignment is in flux.
        if !transactional && group.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Every group with members or a join in progress: (group, protocol type, state).
    pub(crate) fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.groups.lock();
        groups
            .iter()
            .map(|(id, group)| (id.clone(), group.protocol_type.clone(), group.state))
            .collect()
    }

    /// A group's state and members, if the coordinator knows it.
    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let group = groups.get(group_id)?;
        let members = group
            .members
            .iter()
            .map(|(id, member)| DescribedMember {
                member_id: id.clone(),
                instance_id: member.instance_id.clone(),
                client_id: member.client_id.clone(),
                metadata: metadata_for(member, &group.protocol),
                assignment: member.assignment.clone(),
            })
            .collect();
        Some(GroupDescription {
            state: group.state,
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            members,
        })
    }

    /// Whether the group has members (a group with members cannot be deleted).
    pub(crate) fn has_members(&self, group_id: &str) -> bool {
        let groups = self.groups.lock();
        groups
            .get(group_id)
            .is_some_and(|group| !group.members.is_empty())
    }

    /// Forgets an empty group; returns whether it was known.
    pub(crate) fn forget(&self, group_id: &str) -> bool {
        let mut groups = self.groups.lock();
        match groups.get(group_id) {
            Some(group) if group.members.is_empty() => groups.remove(group_id).is_some(),
            _ => false,
        }
    }

    #[cfg(test)]
    fn state(&self, group_id: &str) -> Option<(GroupState, i32, usize)> {
        let groups = self.groups.lock();
        groups
            .get(group_id)
            .map(|group| (group.state, group.generation, group.members.len()))
    }
}

/// A fresh member id: the client id and a unique suffix, as Kafka forms them.
fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::from_u128(rand_u128()))
}

/// Member ids only need to be unique; time plus a process-wide counter is enough.
fn rand_u128() -> u128 {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    (nanos << 32) ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests;
