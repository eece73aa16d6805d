//! The set of settled (acked or purged) offsets of a queue, as disjoint half-open ranges.
//!
//! Invariant: ranges never overlap or touch (touching ranges are merged), so the number of
//! ranges is at most the number of unsettled gaps plus one, however many offsets were acked.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SettledSet {
    /// start -> end (exclusive).
    ranges: BTreeMap<i64, i64>,
}

impl SettledSet {
    pub(crate) fn insert(&mut self, offset: i64) {
        self.insert_range(offset, offset.saturating_add(1));
    }

    /// Adds `[start, end)`.
    pub(crate) fn insert_range(&mut self, mut start: i64, mut end: i64) {
        if start >= end {
            return;
        }
        if let Some((&before_start, &before_end)) = self.ranges.range(..=start).next_back()
            && before_end >= start
        {
            start = before_start;
            end = end.max(before_end);
        }
        let absorbed: Vec<i64> = self.ranges.range(start..=end).map(|(&s, _)| s).collect();
        for range_start in absorbed {
            if let Some(range_end) = self.ranges.remove(&range_start) {
                end = end.max(range_end);
            }
        }
        self.ranges.insert(start, end);
    }

    pub(crate) fn contains(&self, offset: i64) -> bool {
        self.ranges
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, &end)| offset < end)
    }

    /// The lowest offset at or after `from` that is not settled.
    pub(crate) fn first_unsettled_from(&self, from: i64) -> i64 {
        match self.ranges.range(..=from).next_back() {
            Some((_, &end)) if end > from => end,
            _ => from,
        }
    }

    /// How many offsets of `[start, end)` are settled.
    pub(crate) fn count_in(&self, start: i64, end: i64) -> u64 {
        if start >= end {
            return 0;
        }
        let first = self
            .ranges
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        self.ranges
            .range(first..end)
            .map(|(&s, &e)| {
                let overlap = e.min(end) - s.max(start);
                u64::try_from(overlap).unwrap_or(0)
            })
            .sum()
    }

    /// The ranges in offset order.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }

    pub(crate) fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn merges_touching_and_overlapping_ranges() {
        let mut set = SettledSet::default();
        set.insert(5);
        set.insert(7);
        assert_eq!(set.range_count(), 2);
        set.insert(6);
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![(5, 8)]);
        set.insert_range(0, 5);
        set.insert_range(20, 30);
        set.insert_range(8, 21);
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![(0, 30)]);
        assert_eq!(set.first_unsettled_from(0), 30);
        assert_eq!(set.first_unsettled_from(31), 31);
    }

    proptest! {
        #[test]
        fn agrees_with_a_plain_set(
            ops in prop::collection::vec((0i64..64, 1i64..6), 0..40),
            probe in 0i64..80,
            span in 0i64..80,
        ) {
            let mut set = SettledSet::default();
            let mut model = BTreeSet::new();
            for (start, len) in ops {
                set.insert_range(start, start + len);
                model.extend(start..start + len);
            }
            for offset in 0..80 {
                prop_assert_eq!(set.contains(offset), model.contains(&offset));
            }
            let gap = (probe..).find(|o| !model.contains(o)).unwrap();
            prop_assert_eq!(set.first_unsettled_from(probe), gap);
            let end = probe + span;
            let expected = model.range(probe..end.max(probe)).count() as u64;
            prop_assert_eq!(set.count_in(probe, end), expected);
            let ranges: Vec<_> = set.ranges().collect();
            for pair in ranges.windows(2) {
                prop_assert!(pair[0].1 < pair[1].0, "ranges touch: {:?}", pair);
            }
        }
    }
}
