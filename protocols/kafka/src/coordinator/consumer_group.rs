//! One KIP-848 consumer group: members, epochs, the target assignment and each member's
//! reconciliation towards it (see [`super::consumer`] for the protocol around it).
//!
//! Epochs: the group epoch rises by one whenever something the assignment depends on changes
//! (a member joins or goes, a subscription or the preferred assignor changes, a subscribed
//! topic appears or grows). The target assignment is recomputed at once, so the assignment
//! epoch catches up with the group epoch within the same step. A member's epoch reaches the
//! assignment epoch when it has given up every partition the target takes from it.
//!
//! Invariant (incremental revocation): a partition is in at most one member's `assigned` or
//! `pending_revocation` set. A member is handed a partition of its target only once no other
//! member holds it in either set, i.e. after the previous owner acknowledged the revocation by
//! a heartbeat whose owned partitions no longer include it (or left, or was fenced).
//!
//! Assignment epochs (KIP-1251, Kafka 4.3): every partition a member holds (assigned or pending
//! revocation) carries the member epoch at which it was handed to that member; it does not
//! change while the member keeps the partition across epochs. A commit with an epoch older than
//! the member's is accepted for a partition it holds since that epoch or earlier
//! (`assignment epoch <= commit epoch <= member epoch`): the member cannot have lost it since.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::assignor::{self, Assignment};

/// Where a member stands in its reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    /// At the assignment epoch with all of its target.
    Stable,
    /// Must give up `pending_revocation` before moving to the new epoch.
    UnrevokedPartitions,
    /// At the assignment epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

/// The member epoch of a static member that left for a while (KIP-848 `-2`).
pub(crate) const LEFT_STATIC_EPOCH: i32 = -2;

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) subscribed_names: Vec<String>,
    pub(crate) subscribed_regex: Option<String>,
    /// `subscribed_regex` compiled once when it changes, not at every resolution.
    pub(crate) compiled_regex: Option<regex::Regex>,
    pub(crate) server_assignor: Option<String>,
    pub(crate) rebalance_timeout: Duration,
    /// The topics the subscription resolves to, as of the last metadata seen.
    pub(crate) resolved: BTreeSet<String>,
    pub(crate) epoch: i32,
    pub(crate) previous_epoch: i32,
    pub(crate) state: MemberState,
    pub(crate) assigned: Assignment,
    pub(crate) pending_revocation: Assignment,
    /// Topic -> partition -> the member epoch it was handed over at, for every partition of
    /// `assigned` and `pending_revocation` (see [`ConsumerMember::settle_epochs`]).
    pub(crate) assignment_epochs: BTreeMap<String, BTreeMap<u32, i32>>,
    pub(crate) last_seen: Instant,
    /// Set while partitions wait to be revoked: past it, the member is fenced.
    pub(crate) revoke_deadline: Option<Instant>,
}

impl ConsumerMember {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_names: Vec::new(),
            subscribed_regex: None,
            compiled_regex: None,
            server_assignor: None,
            rebalance_timeout: Duration::ZERO,
            resolved: BTreeSet::new(),
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            assignment_epochs: BTreeMap::new(),
            last_seen: now,
            revoke_deadline: None,
        }
    }

    /// Brings `assignment_epochs` in line with what the member holds after a change: a partition
    /// given up loses its epoch, one newly held takes the member's current epoch, one kept
    /// keeps the epoch it was handed over at.
    fn settle_epochs(&mut self) {
        let held = |topic: &str, partition: &u32| {
            [&self.assigned, &self.pending_revocation]
                .iter()
                .any(|set| set.get(topic).is_some_and(|held| held.contains(partition)))
        };
        let mut epochs = std::mem::take(&mut self.assignment_epochs);
        for (topic, partitions) in &mut epochs {
            partitions.retain(|partition, _| held(topic, partition));
        }
        epochs.retain(|_, partitions| !partitions.is_empty());
        for set in [&self.assigned, &self.pending_revocation] {
            for (topic, partitions) in set {
                let known = epochs.entry(topic.clone()).or_default();
                for partition in partitions {
                    known.entry(*partition).or_insert(self.epoch);
                }
            }
        }
        epochs.retain(|_, partitions| !partitions.is_empty());
        self.assignment_epochs = epochs;
    }

    /// The partitions a commit made at `epoch` (older than the member's) may still commit:
    /// those the member holds since `epoch` or earlier.
    pub(crate) fn held_since(&self, epoch: i32) -> Assignment {
        self.assignment_epochs
            .iter()
            .filter_map(|(topic, partitions)| {
                let held: BTreeSet<u32> = partitions
                    .iter()
                    .filter(|(_, since)| **since <= epoch)
                    .map(|(partition, _)| *partition)
                    .collect();
                (!held.is_empty()).then(|| (topic.clone(), held))
            })
            .collect()
    }
}

#[derive(Debug)]
pub(crate) struct ConsumerGroup {
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    pub(crate) target: BTreeMap<String, Assignment>,
    /// Static members: instance id -> member id holding it.
    pub(crate) instances: HashMap<String, String>,
    /// Subscribed topics as of the last computation: name -> (topic id, partition count).
    pub(crate) metadata: BTreeMap<String, ([u8; 16], u32)>,
    /// The assignor of the current target assignment.
    pub(crate) assignor: String,
}

impl ConsumerGroup {
    pub(crate) fn new() -> Self {
        Self {
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            instances: HashMap::new(),
            metadata: BTreeMap::new(),
            assignor: assignor::UNIFORM.to_owned(),
        }
    }

    /// Kafka's names: Empty, Assigning, Reconciling, Stable.
    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|member| {
            member.epoch != LEFT_STATIC_EPOCH
                && (member.epoch != self.assignment_epoch || member.state != MemberState::Stable)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor most members ask for (ties: by name), else `uniform`.
    fn preferred_assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map_or_else(|| assignor::UNIFORM.to_owned(), |(name, _)| name.to_owned())
    }

    /// Raises the group epoch and recomputes the target assignment at once.
    pub(crate) fn bump(&mut self) {
        self.group_epoch = self.group_epoch.wrapping_add(1);
        self.assignor = self.preferred_assignor();
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, member)| (id.clone(), member.resolved.clone()))
            .collect();
        let partitions: BTreeMap<String, u32> = self
            .metadata
            .iter()
            .map(|(name, (_, count))| (name.clone(), *count))
            .collect();
        self.target = assignor::assign(&self.assignor, &subscriptions, &partitions, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// Removes a member (leave, expiry, fencing); its partitions are free at once.
    pub(crate) fn remove_member(&mut self, member_id: &str) {
        if let Some(member) = self.members.remove(member_id) {
            if let Some(instance) = &member.instance_id
                && self
                    .instances
                    .get(instance)
                    .is_some_and(|holder| holder == member_id)
            {
                self.instances.remove(instance);
            }
            self.target.remove(member_id);
            self.bump();
        }
    }

    /// Whether a member other than `member_id` holds `topic`-`partition`.
    fn held_by_other(&self, member_id: &str, topic: &str, partition: u32) -> bool {
        self.members.iter().any(|(id, member)| {
            id != member_id
                && [&member.assigned, &member.pending_revocation]
                    .iter()
                    .any(|set| set.get(topic).is_some_and(|held| held.contains(&partition)))
        })
    }

    /// Moves `member_id` towards its target assignment (Kafka's `CurrentAssignmentBuilder`);
    /// `owned` is what the member reported owning (`None`: unchanged since the last heartbeat).
    pub(crate) fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        match member.state {
            MemberState::UnrevokedPartitions => {
                let revoked =
                    owned.is_some_and(|owned| !overlaps(owned, &member.pending_revocation));
                if !revoked {
                    return;
                }
                if let Some(member) = self.members.get_mut(member_id) {
                    member.pending_revocation.clear();
                    member.revoke_deadline = None;
                    member.settle_epochs();
                }
                self.compute_next(member_id, now);
            }
            MemberState::Stable if member.epoch == self.assignment_epoch => {}
            _ => self.compute_next(member_id, now),
        }
    }

    fn compute_next(&mut self, member_id: &str, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        let current = member.assigned.clone();
        let retained = intersect(&current, &target);
        let revoke = subtract(&current, &target);
        if !is_empty(&revoke) {
            if let Some(member) = self.members.get_mut(member_id) {
                member.assigned = retained;
                member.pending_revocation = revoke;
                member.state = MemberState::UnrevokedPartitions;
                member.revoke_deadline = Some(now + member.rebalance_timeout);
                member.settle_epochs();
            }
            return;
        }
        let mut next = retained;
        let mut unreleased = false;
        for (topic, partitions) in subtract(&target, &current) {
            for partition in partitions {
                if self.held_by_other(member_id, &topic, partition) {
                    unreleased = true;
                } else {
                    next.entry(topic.clone()).or_default().insert(partition);
                }
            }
        }
        let epoch = self.assignment_epoch;
        if let Some(member) = self.members.get_mut(member_id) {
            if member.epoch != epoch {
                member.previous_epoch = member.epoch;
                member.epoch = epoch;
            }
            member.assigned = next;
            member.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            member.settle_epochs();
        }
    }
}

pub(crate) fn is_empty(assignment: &Assignment) -> bool {
    assignment.values().all(BTreeSet::is_empty)
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(topic, held)| b.get(topic).is_some_and(|other| !held.is_disjoint(other)))
}

pub(crate) fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, held)| {
            let common: BTreeSet<u32> = b.get(topic)?.intersection(held).copied().collect();
            (!common.is_empty()).then(|| (topic.clone(), common))
        })
        .collect()
}

pub(crate) fn subtract(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, held)| {
            let rest: BTreeSet<u32> = match b.get(topic) {
                Some(other) => held.difference(other).copied().collect(),
                None => held.clone(),
            };
            (!rest.is_empty()).then(|| (topic.clone(), rest))
        })
        .collect()
}

/// Whether every partition of `a` is in `b`.
pub(crate) fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    is_empty(&subtract(a, b))
}
