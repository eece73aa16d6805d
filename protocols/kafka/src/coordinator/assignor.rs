//! The server-side assignors of KIP-848 consumer groups: `uniform` (the default) and `range`.
//!
//! Both are pure functions of the members' subscriptions, the subscribed topics' partition
//! counts and (for stickiness) the previous target assignment.
//!
//! Invariants: every partition of a subscribed topic goes to exactly one member subscribed to
//! that topic (none when nobody subscribes); a member gets only partitions of topics it
//! subscribes to. `uniform` keeps a partition with its previous owner while that keeps the
//! members' counts within one partition of each other among members able to take it; `range`
//! gives each member of a topic a contiguous run, the first `partitions % members` members (by
//! member id) one more, as Kafka's range assignor does for homogeneous subscriptions. Kafka's
//! range assignor also keeps co-partitioned topics together for heterogeneous subscriptions;
//! this one applies the same rule per topic to that topic's subscribers.

use std::collections::{BTreeMap, BTreeSet};

/// Partitions per topic name.
pub(crate) type Assignment = BTreeMap<String, BTreeSet<u32>>;

/// The assignors this coordinator offers, by their Kafka names.
pub(crate) const UNIFORM: &str = "uniform";
pub(crate) const RANGE: &str = "range";

/// Whether `name` is an assignor this coordinator offers.
pub(crate) fn known(name: &str) -> bool {
    name == UNIFORM || name == RANGE
}

/// Computes the target assignment with assignor `name` (`uniform` for anything else).
pub(crate) fn assign(
    name: &str,
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    if name == RANGE {
        range(subscriptions, partitions)
    } else {
        uniform(subscriptions, partitions, previous)
    }
}

fn empty_result(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, Assignment> {
    subscriptions
        .keys()
        .map(|member| (member.clone(), Assignment::new()))
        .collect()
}

fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, Assignment> {
    let mut result = empty_result(subscriptions);
    for (topic, &count) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        let share = count / members.len() as u32;
        let extra = count % members.len() as u32;
        let mut next = 0;
        for (index, member) in members.into_iter().enumerate() {
            let take = share + u32::from((index as u32) < extra);
            if take == 0 {
                continue;
            }
            let run: BTreeSet<u32> = (next..next + take).collect();
            next += take;
            if let Some(assignment) = result.get_mut(member) {
                assignment.insert(topic.clone(), run);
            }
        }
    }
    result
}

fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let eligible = |member: &str, topic: &str| {
        subscriptions
            .get(member)
            .is_some_and(|topics| topics.contains(topic))
    };
    // owner of each (topic, partition), sticky first.
    let mut owner: BTreeMap<(String, u32), String> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = subscriptions
        .keys()
        .map(|member| (member.clone(), 0))
        .collect();
    for (member, assignment) in previous {
        for (topic, held) in assignment {
            let Some(&count) = partitions.get(topic) else {
                continue;
            };
            if !eligible(member, topic) {
                continue;
            }
            for &partition in held.iter().filter(|&&partition| partition < count) {
                owner.insert((topic.clone(), partition), member.clone());
                *counts.entry(member.clone()).or_default() += 1;
            }
        }
    }
    // Unowned partitions go to the least loaded member able to take them.
    for (topic, &count) in partitions {
        for partition in 0..count {
            let key = (topic.clone(), partition);
            if owner.contains_key(&key) {
                continue;
            }
            let least = counts
                .iter()
                .filter(|(member, _)| eligible(member, topic))
                .min_by_key(|(member, count)| (**count, (*member).clone()))
                .map(|(member, _)| member.clone());
            if let Some(member) = least {
                *counts.entry(member.clone()).or_default() += 1;
                owner.insert(key, member);
            }
        }
    }
    // Then move partitions from the most to the least loaded member until no member able to
    // take a partition of a fuller member is more than one behind it. Each move lowers the sum
    // of squared counts, so this ends; the bound is a guard.
    let bound = owner.len().saturating_mul(subscriptions.len().max(1)) + 1;
    for _ in 0..bound {
        let mut best: Option<((String, u32), String, usize)> = None;
        for (key, holder) in &owner {
            let held = counts.get(holder).copied().unwrap_or(0);
            for (member, &count) in &counts {
                if member != holder && count + 1 < held && eligible(member, &key.0) {
                    let gap = held - count;
                    if best.as_ref().is_none_or(|(_, _, best_gap)| gap > *best_gap) {
                        best = Some((key.clone(), member.clone(), gap));
                    }
                }
            }
        }
        let Some((key, member, _)) = best else {
            break;
        };
        if let Some(holder) = owner.insert(key, member.clone())
            && let Some(count) = counts.get_mut(&holder)
        {
            *count -= 1;
        }
        *counts.entry(member).or_default() += 1;
    }
    let mut result = empty_result(subscriptions);
    for ((topic, partition), member) in owner {
        if let Some(assignment) = result.get_mut(&member) {
            assignment.entry(topic).or_default().insert(partition);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members
            .iter()
            .map(|(member, topics)| {
                (
                    (*member).to_owned(),
                    topics.iter().map(|topic| (*topic).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn counts(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
        result
            .values()
            .map(|assignment| assignment.values().map(BTreeSet::len).sum())
            .collect()
    }

    fn covers_once(result: &BTreeMap<String, Assignment>, partitions: &BTreeMap<String, u32>) {
        let mut seen = BTreeSet::new();
        for assignment in result.values() {
            for (topic, held) in assignment {
                for partition in held {
                    assert!(
                        seen.insert((topic.clone(), *partition)),
                        "{topic}-{partition} twice"
                    );
                }
            }
        }
        let total: u32 = partitions.values().sum();
        assert_eq!(seen.len(), total as usize);
    }

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let partitions = BTreeMap::from([("t".to_owned(), 12)]);
        let two = subs(&[("a", &["t"]), ("b", &["t"])]);
        let first = assign(UNIFORM, &two, &partitions, &BTreeMap::new());
        covers_once(&first, &partitions);
        assert_eq!(counts(&first), vec![6, 6]);
        let three = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let second = assign(UNIFORM, &three, &partitions, &first);
        covers_once(&second, &partitions);
        assert_eq!(counts(&second), vec![4, 4, 4]);
        // Sticky: a and b only lost partitions, never gained any.
        for member in ["a", "b"] {
            let before = &first[member]["t"];
            let after = &second[member]["t"];
            assert!(
                after.is_subset(before),
                "{member}: {after:?} not within {before:?}"
            );
        }
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let partitions = BTreeMap::from([("x".to_owned(), 4), ("y".to_owned(), 2)]);
        let members = subs(&[("a", &["x"]), ("b", &["x", "y"])]);
        let result = assign(UNIFORM, &members, &partitions, &BTreeMap::new());
        covers_once(&result, &partitions);
        assert!(!result["a"].contains_key("y"));
        assert_eq!(counts(&result), vec![3, 3]);
    }

    #[test]
    fn range_gives_contiguous_runs() {
        let partitions = BTreeMap::from([("t".to_owned(), 7)]);
        let members = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let result = assign(RANGE, &members, &partitions, &BTreeMap::new());
        covers_once(&result, &partitions);
        assert_eq!(result["a"]["t"], BTreeSet::from([0, 1, 2]));
        assert_eq!(result["b"]["t"], BTreeSet::from([3, 4]));
        assert_eq!(result["c"]["t"], BTreeSet::from([5, 6]));
    }
}
