//! KIP-848 consumer groups on the coordinator: ConsumerGroupHeartbeat's join, heartbeat and
//! leave, session and rebalance-timeout fencing, static members, regex subscriptions, and the
//! views ConsumerGroupDescribe, ListGroups and the offset APIs need. In memory, like the classic
//! groups: members rejoin after a restart; committed offsets live in the engine's offset store.
//!
//! A group id names either a classic or a consumer group, never both (Kafka 4 without online
//! migration): a heartbeat replaces an empty classic group (Kafka's
//! `maybeDeleteEmptyClassicGroup`) and is refused GROUP_ID_NOT_FOUND by a non-empty one; a
//! classic JoinGroup replaces an empty consumer group and gets INCONSISTENT_GROUP_PROTOCOL from
//! a non-empty one (Kafka would let the classic member join a mixed group instead).
//!
//! Lock discipline: the classic map is locked before the consumer map, never the reverse.
//!
//! Regular expressions (`SubscribedTopicRegex`) are RE2/J in Kafka; the Rust `regex` crate
//! accepts the same syntax but for a few Java-only escapes, and a pattern must match the whole
//! topic name, as Java's `Matcher.matches`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::ResponseError;
use regex::Regex;
use tokio::time::Instant;

use super::Coordinator;
use super::assignor;
pub(crate) use super::assignor::Assignment;
use super::consumer_group::{ConsumerGroup, ConsumerMember, LEFT_STATIC_EPOCH, is_subset};

/// Epoch of a member leaving for good.
const LEAVE_EPOCH: i32 = -1;

/// A topic as the assignment sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    pub(crate) id: [u8; 16],
    pub(crate) partitions: u32,
}

/// Every (non-internal) topic by name.
pub(crate) type TopicsView = BTreeMap<String, TopicMeta>;

/// Broker settings of consumer groups, with Kafka's names and defaults in [`Default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerGroupSettings {
    /// `group.consumer.heartbeat.interval.ms` (5000).
    pub heartbeat_interval: Duration,
    /// `group.consumer.session.timeout.ms` (45000).
    pub session_timeout: Duration,
    /// `group.consumer.max.size` (unbounded).
    pub max_size: usize,
}

impl Default for ConsumerGroupSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(5_000),
            session_timeout: Duration::from_millis(45_000),
            max_size: usize::MAX,
        }
    }
}

/// A ConsumerGroupHeartbeat as the coordinator needs it (topic ids already mapped to names).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeartbeatParams {
    pub(crate) group: String,
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    /// -1: unchanged.
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) subscribed_names: Option<Vec<String>>,
    pub(crate) subscribed_regex: Option<String>,
    pub(crate) server_assignor: Option<String>,
    pub(crate) owned: Option<Assignment>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
}

/// A successful heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatAnswer {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    /// The member's whole assignment when it changed (or the request was a full one).
    pub(crate) assignment: Option<Assignment>,
}

/// The partitions a consumer group lets an offset commit write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommitFence {
    /// Every partition of the commit.
    Open,
    /// Only these; every other partition of the commit is refused STALE_MEMBER_EPOCH.
    Only(Assignment),
}

impl CommitFence {
    /// Whether the commit may write `topic`-`partition`.
    pub(crate) fn admits(&self, topic: &str, partition: i32) -> bool {
        match self {
            Self::Open => true,
            Self::Only(held) => u32::try_from(partition)
                .is_ok_and(|partition| held.get(topic).is_some_and(|set| set.contains(&partition))),
        }
    }
}

/// A refused heartbeat: Kafka's error and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) error: ResponseError,
    pub(crate) message: String,
}

fn refuse(error: ResponseError, message: impl Into<String>) -> Refusal {
    Refusal {
        error,
        message: message.into(),
    }
}

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribedConsumer {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) member_epoch: i32,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) subscribed_names: Vec<String>,
    pub(crate) subscribed_regex: Option<String>,
    pub(crate) assignment: Assignment,
    pub(crate) target: Assignment,
}

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribedConsumerGroup {
    pub(crate) state: &'static str,
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) assignor: String,
    pub(crate) members: Vec<DescribedConsumer>,
    /// Topic ids of the topics named in assignments.
    pub(crate) topic_ids: BTreeMap<String, [u8; 16]>,
}

/// Compiles a subscription regex with Java's whole-name match semantics.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, Refusal> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|error| {
        refuse(
            ResponseError::InvalidRegularExpression,
            format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {error}"),
        )
    })
}

/// The topics a member's subscription resolves to in `topics`.
fn resolve(member: &ConsumerMember, topics: &TopicsView) -> BTreeSet<String> {
    let mut resolved: BTreeSet<String> = member
        .subscribed_names
        .iter()
        .filter(|name| topics.contains_key(name.as_str()))
        .cloned()
        .collect();
    if let Some(regex) = &member.compiled_regex {
        resolved.extend(topics.keys().filter(|name| regex.is_match(name)).cloned());
    }
    resolved
}

/// Kafka's request validation (`throwIfConsumerGroupHeartbeatRequestIsInvalid`).
pub(crate) fn validate(params: &HeartbeatParams, version: i16) -> Result<(), Refusal> {
    let invalid = |message: &str| Err(refuse(ResponseError::InvalidRequest, message));
    if params.group.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if params.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if version >= 1 && params.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    match params.member_epoch {
        0 => {
            if params.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if params.owned.as_ref().is_none_or(|owned| !owned.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if params.subscribed_names.is_none() && params.subscribed_regex.is_none() {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        LEFT_STATIC_EPOCH if params.instance_id.is_none() => {
            return invalid("InstanceId can't be null.");
        }
        epoch if epoch < LEFT_STATIC_EPOCH => return invalid("MemberEpoch is invalid."),
        _ if params.member_id.is_empty() => return invalid("MemberId can't be empty."),
        _ => {}
    }
    if let Some(name) = &params.server_assignor
        && !assignor::known(name)
    {
        return Err(refuse(
            ResponseError::UnsupportedAssignor,
            format!("ServerAssignor {name} is not supported. Supported assignors: uniform, range."),
        ));
    }
    if let Some(pattern) = &params.subscribed_regex {
        compile_regex(pattern)?;
    }
    Ok(())
}

impl Coordinator {
    /// One ConsumerGroupHeartbeat (validated by [`validate`]) against `topics`, the topics the
    /// broker has now.
    pub(crate) fn consumer_heartbeat(
        &self,
        mut params: HeartbeatParams,
        topics: &TopicsView,
        now: Instant,
    ) -> Result<HeartbeatAnswer, Refusal> {
        let settings = &self.consumer_settings;
        let mut classic = self.groups.lock();
        let mut groups = self.consumer.lock();
        let group_id = params.group.clone();
        if let Some(existing) = classic.get(&group_id) {
            if !existing.members.is_empty() {
                return Err(refuse(
                    ResponseError::GroupIdNotFound,
                    format!(
                        "Cannot upgrade classic group {group_id} to consumer group because online upgrade is disabled."
                    ),
                ));
            }
            if params.member_epoch != 0 {
                return Err(refuse(
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group."),
                ));
            }
            classic.remove(&group_id);
        }
        drop(classic);
        if params.member_epoch == LEAVE_EPOCH || params.member_epoch == LEFT_STATIC_EPOCH {
            let group = groups.get_mut(&group_id).ok_or_else(|| {
                refuse(
                    ResponseError::UnknownMemberId,
                    format!(
                        "Member {} is not a member of group {group_id}.",
                        params.member_id
                    ),
                )
            })?;
            return leave(group, &params);
        }
        if params.member_epoch != 0 && !groups.contains_key(&group_id) {
            return Err(refuse(
                ResponseError::UnknownMemberId,
                format!(
                    "Member {} is not a member of group {group_id}.",
                    params.member_id
                ),
            ));
        }
        let group = groups
            .entry(group_id.clone())
            .or_insert_with(ConsumerGroup::new);
        if params.member_id.is_empty() {
            // v0: the coordinator names the member.
            params.member_id = uuid::Uuid::from_u128(super::rand_u128()).to_string();
        }
        let member_id = params.member_id.clone();
        let mut changed = false;
        if params.member_epoch == 0 {
            changed |= join(group, &params, settings, now)?;
        } else {
            check_epoch(group, &params)?;
        }
        let Some(member) = group.members.get_mut(&member_id) else {
            return Err(refuse(ResponseError::UnknownMemberId, "Unknown member."));
        };
        member.last_seen = now;
        changed |= update_member(member, &params);
        let before = member.assigned.clone();
        let before_epoch = member.epoch;
        // Resolve every member's subscription against the current topics: a new topic, a
        // regex match or more partitions change the target assignment.
        let mut metadata = BTreeMap::new();
        for member in group.members.values_mut() {
            member.resolved = resolve(member, topics);
            for name in &member.resolved {
                if let Some(topic) = topics.get(name) {
                    metadata.insert(name.clone(), (topic.id, topic.partitions));
                }
            }
        }
        if metadata != group.metadata {
            group.metadata = metadata;
            changed = true;
        }
        if changed || group.group_epoch > group.assignment_epoch {
            group.bump();
        }
        group.reconcile(&member_id, params.owned.as_ref(), now);
        let member = &group.members[&member_id];
        let full = params.rebalance_timeout_ms != -1
            && (params.subscribed_names.is_some() || params.subscribed_regex.is_some())
            && params.owned.is_some();
        let send = params.member_epoch == 0
            || full
            || member.assigned != before
            || member.epoch != before_epoch;
        Ok(HeartbeatAnswer {
            member_id,
            member_epoch: member.epoch,
            assignment: send.then(|| member.assigned.clone()),
        })
    }

    /// Fences consumer-group members silent past the session timeout or holding partitions
    /// to revoke past their rebalance timeout.
    pub(super) fn sweep_consumers(&self, now: Instant) {
        let session_timeout = self.consumer_settings.session_timeout;
        let mut groups = self.consumer.lock();
        for group in groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, member)| {
                    member.last_seen + session_timeout < now
                        || member
                            .revoke_deadline
                            .is_some_and(|deadline| deadline < now)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "kafka consumer group member fenced (session or rebalance timeout)");
                group.remove_member(&id);
            }
        }
    }

    /// A consumer group's description, or `None` when `group` is not a consumer group.
    pub(crate) fn describe_consumer(&self, group: &str) -> Option<DescribedConsumerGroup> {
        let groups = self.consumer.lock();
        let group = groups.get(group)?;
        let members = group
            .members
            .iter()
            .map(|(id, member)| DescribedConsumer {
                member_id: id.clone(),
                instance_id: member.instance_id.clone(),
                rack_id: member.rack_id.clone(),
                member_epoch: member.epoch,
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                subscribed_names: member.subscribed_names.clone(),
                subscribed_regex: member.subscribed_regex.clone(),
                assignment: member.assigned.clone(),
                target: group.target.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        Some(DescribedConsumerGroup {
            state: group.state_name(),
            group_epoch: group.group_epoch,
            assignment_epoch: group.assignment_epoch,
            assignor: group.assignor.clone(),
            members,
            topic_ids: group
                .metadata
                .iter()
                .map(|(name, (id, _))| (name.clone(), *id))
                .collect(),
        })
    }

    /// Every consumer group: (group, state name).
    pub(crate) fn list_consumers(&self) -> Vec<(String, &'static str)> {
        let groups = self.consumer.lock();
        groups
            .iter()
            .map(|(id, group)| (id.clone(), group.state_name()))
            .collect()
    }

    /// Checks an OffsetCommit (or TxnOffsetCommit) against a consumer group as Kafka 4.3's
    /// `ConsumerGroup.validateOffsetCommit` does (KIP-1251); `None` when `group` is not a
    /// consumer group. A commit at the member's epoch may write every partition; one at an
    /// older epoch (the member has not seen its new epoch yet, or commits from its revoke
    /// callback) only the partitions the member holds since that epoch: the rest, and any
    /// commit from a newer epoch than the member's, are STALE_MEMBER_EPOCH.
    pub(crate) fn validate_consumer_commit(
        &self,
        group: &str,
        member_epoch: i32,
        member_id: &str,
        transactional: bool,
        version: i16,
    ) -> Option<Result<CommitFence, ResponseError>> {
        let groups = self.consumer.lock();
        let group = groups.get(group)?;
        if member_epoch < 0 && group.members.is_empty() {
            return Some(Ok(CommitFence::Open));
        }
        let Some(member) = group.members.get(member_id) else {
            return Some(Err(ResponseError::UnknownMemberId));
        };
        // KIP-848 members commit with OffsetCommit v9+ (the epoch in place of the generation).
        if !transactional && version < 9 {
            return Some(Err(ResponseError::UnsupportedVersion));
        }
        Some(if member_epoch == member.epoch {
            Ok(CommitFence::Open)
        } else if member_epoch > member.epoch {
            Err(ResponseError::StaleMemberEpoch)
        } else {
            Ok(CommitFence::Only(member.held_since(member_epoch)))
        })
    }

    /// Whether `group` is a consumer group with members.
    pub(crate) fn consumer_has_members(&self, group: &str) -> bool {
        let groups = self.consumer.lock();
        groups
            .get(group)
            .is_some_and(|group| !group.members.is_empty())
    }

    /// Whether `group` is a consumer group (empty or not).
    pub(crate) fn is_consumer_group(&self, group: &str) -> bool {
        self.consumer.lock().contains_key(group)
    }

    /// Forgets an empty consumer group; returns whether it was known.
    pub(crate) fn forget_consumer(&self, group: &str) -> bool {
        let mut groups = self.consumer.lock();
        match groups.get(group) {
            Some(found) if found.members.is_empty() => groups.remove(group).is_some(),
            _ => false,
        }
    }

    /// For a classic JoinGroup: `Err` when `group` is a consumer group with members; an empty
    /// one is replaced (Kafka's `maybeDeleteEmptyConsumerGroup`).
    pub(super) fn yield_to_classic(&self, group: &str) -> Result<(), ResponseError> {
        let mut groups = self.consumer.lock();
        match groups.get(group) {
            Some(found) if !found.members.is_empty() => {
                Err(ResponseError::InconsistentGroupProtocol)
            }
            Some(_) => {
                groups.remove(group);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// A member leaving: for good (-1) or, a static member, for a while (-2).
fn leave(group: &mut ConsumerGroup, params: &HeartbeatParams) -> Result<HeartbeatAnswer, Refusal> {
    let member_id = match &params.instance_id {
        Some(instance) => {
            let holder = group.instances.get(instance).cloned().ok_or_else(|| {
                refuse(
                    ResponseError::UnknownMemberId,
                    format!("Instance id {instance} is unknown."),
                )
            })?;
            if holder != params.member_id {
                return Err(refuse(
                    ResponseError::FencedInstanceId,
                    format!(
                        "Static member {} with instance id {instance} was fenced by member {holder}.",
                        params.member_id
                    ),
                ));
            }
            holder
        }
        None => params.member_id.clone(),
    };
    if !group.members.contains_key(&member_id) {
        return Err(refuse(
            ResponseError::UnknownMemberId,
            format!("Member {member_id} is not a member of the group."),
        ));
    }
    if params.member_epoch == LEFT_STATIC_EPOCH {
        // The member keeps its assignment and place until its session expires, so a quick
        // restart with the same instance id takes both back without a rebalance.
        if let Some(member) = group.members.get_mut(&member_id) {
            member.epoch = LEFT_STATIC_EPOCH;
        }
    } else {
        group.remove_member(&member_id);
    }
    Ok(HeartbeatAnswer {
        member_id,
        member_epoch: params.member_epoch,
        assignment: None,
    })
}

/// A member joining (epoch 0); returns whether the group's membership changed.
fn join(
    group: &mut ConsumerGroup,
    params: &HeartbeatParams,
    settings: &ConsumerGroupSettings,
    now: Instant,
) -> Result<bool, Refusal> {
    let member_id = &params.member_id;
    if let Some(instance) = &params.instance_id
        && let Some(holder) = group.instances.get(instance).cloned()
    {
        if holder == *member_id {
            return Ok(false);
        }
        let Some(previous) = group.members.get(&holder) else {
            group.instances.remove(instance);
            return join_new(group, params, settings, now);
        };
        if previous.epoch != LEFT_STATIC_EPOCH {
            return Err(refuse(
                ResponseError::UnreleasedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance} cannot join the group because the instance id is owned by {holder} member."
                ),
            ));
        }
        // A static member back under a new member id: it takes over the old member's
        // assignment and place, without a new group epoch.
        let mut member = group
            .members
            .remove(&holder)
            .unwrap_or_else(|| ConsumerMember::new(now));
        member.epoch = 0;
        member.previous_epoch = -1;
        member.last_seen = now;
        group.members.insert(member_id.clone(), member);
        if let Some(target) = group.target.remove(&holder) {
            group.target.insert(member_id.clone(), target);
        }
        group.instances.insert(instance.clone(), member_id.clone());
        return Ok(false);
    }
    if group.members.contains_key(member_id) {
        // A known member rejoining (after being fenced by its client, say) keeps its state.
        return Ok(false);
    }
    join_new(group, params, settings, now)
}

fn join_new(
    group: &mut ConsumerGroup,
    params: &HeartbeatParams,
    settings: &ConsumerGroupSettings,
    now: Instant,
) -> Result<bool, Refusal> {
    if group.members.len() >= settings.max_size {
        return Err(refuse(
            ResponseError::GroupMaxSizeReached,
            format!(
                "The consumer group has reached its maximum capacity of {} members.",
                settings.max_size
            ),
        ));
    }
    let mut member = ConsumerMember::new(now);
    member.instance_id = params.instance_id.clone();
    if let Some(instance) = &params.instance_id {
        group
            .instances
            .insert(instance.clone(), params.member_id.clone());
    }
    group.members.insert(params.member_id.clone(), member);
    Ok(true)
}

/// Kafka's epoch check for a member already in the group (`throwIfMemberEpochIsInvalid`).
fn check_epoch(group: &ConsumerGroup, params: &HeartbeatParams) -> Result<(), Refusal> {
    let Some(member) = group.members.get(&params.member_id) else {
        return Err(refuse(
            ResponseError::UnknownMemberId,
            format!("Member {} is not a member of the group.", params.member_id),
        ));
    };
    if let Some(instance) = &params.instance_id {
        match group.instances.get(instance) {
            None => {
                return Err(refuse(
                    ResponseError::UnknownMemberId,
                    format!("Instance id {instance} is unknown."),
                ));
            }
            Some(holder) if *holder != params.member_id => {
                return Err(refuse(
                    ResponseError::FencedInstanceId,
                    format!("Static member with instance id {instance} was fenced."),
                ));
            }
            Some(_) => {}
        }
    }
    let received = params.member_epoch;
    let fenced = || {
        Err(refuse(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.epoch
            ),
        ))
    };
    if received > member.epoch {
        return fenced();
    }
    if received < member.epoch {
        // A member that missed the answer moving it to the new epoch may retry with the
        // previous one, as long as it owns nothing it no longer has.
        let retry = received == member.previous_epoch
            && params
                .owned
                .as_ref()
                .is_some_and(|owned| is_subset(owned, &member.assigned));
        if !retry {
            return Err(refuse(
                ResponseError::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                    member.epoch
                ),
            ));
        }
    }
    Ok(())
}

/// Applies the request's non-null fields; returns whether the subscription changed.
fn update_member(member: &mut ConsumerMember, params: &HeartbeatParams) -> bool {
    let mut changed = false;
    if let Some(names) = &params.subscribed_names {
        let mut names = names.clone();
        names.sort();
        names.dedup();
        if names != member.subscribed_names {
            member.subscribed_names = names;
            changed = true;
        }
    }
    if let Some(regex) = &params.subscribed_regex {
        let regex = (!regex.is_empty()).then(|| regex.clone());
        if regex != member.subscribed_regex {
            // `validate` compiled it already; a pattern that does not compile matches nothing.
            member.compiled_regex = regex.as_deref().and_then(|p| compile_regex(p).ok());
            member.subscribed_regex = regex;
            changed = true;
        }
    }
    if params.server_assignor.is_some() && params.server_assignor != member.server_assignor {
        member.server_assignor = params.server_assignor.clone();
        changed = true;
    }
    if params.rebalance_timeout_ms >= 0 {
        member.rebalance_timeout =
            Duration::from_millis(u64::try_from(params.rebalance_timeout_ms).unwrap_or(0));
    }
    if params.rack_id.is_some() {
        member.rack_id = params.rack_id.clone();
    }
    if !params.client_id.is_empty() {
        member.client_id = params.client_id.clone();
    }
    if !params.client_host.is_empty() {
        member.client_host = params.client_host.clone();
    }
    changed
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
