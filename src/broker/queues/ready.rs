//! The in-memory index of an indexed queue's ready messages (priority queues and queues that
//! count bytes): delivery order is highest priority first, then lowest offset, so requeued
//! messages go back to their place and a queue without priorities stays FIFO.
//!
//! Invariants: an offset is in at most one of `ready` and `handed_out`; `bytes` is the sum of
//! the ready entries' sizes; priorities are clamped to `max_priority` when indexed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use tributary_api::Record;
use tributary_api::queue::PRIORITY_HEADER;

/// What the index keeps about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) priority: u8,
    /// Value (body) bytes.
    pub(crate) bytes: u64,
    /// Handed out before (requeued, or delivered before the last restart).
    pub(crate) redelivered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ReadyIndex {
    max_priority: u8,
    ready: BTreeMap<(Reverse<u8>, i64), Entry>,
    bytes: u64,
    handed_out: HashMap<i64, Entry>,
}

impl ReadyIndex {
    pub(crate) fn new(max_priority: u8) -> Self {
        Self {
            max_priority,
            ..Self::default()
        }
    }

    /// The entry a record gets in this queue.
    pub(crate) fn entry_for(&self, record: &Record, redelivered: bool) -> Entry {
        let priority = record
            .headers
            .iter()
            .find(|(key, _)| key.as_ref() == PRIORITY_HEADER)
            .and_then(|(_, value)| value.as_ref()?.first().copied())
            .unwrap_or(0)
            .min(self.max_priority);
        Entry {
            priority,
            bytes: record.value.as_ref().map_or(0, |v| v.len() as u64),
            redelivered,
        }
    }

    pub(crate) fn insert(&mut self, offset: i64, entry: Entry) {
        let key = (Reverse(entry.priority), offset);
        if let Some(old) = self.ready.insert(key, entry) {
            self.bytes -= old.bytes;
        }
        self.bytes += entry.bytes;
    }

    /// The next ready message in delivery order.
    pub(crate) fn first(&self) -> Option<(i64, Entry)> {
        self.ready
            .iter()
            .next()
            .map(|((_, offset), e)| (*offset, *e))
    }

    fn remove_ready(&mut self, offset: i64, priority: u8) -> Option<Entry> {
        let entry = self.ready.remove(&(Reverse(priority), offset))?;
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Moves a ready message to the handed-out set.
    pub(crate) fn hand_out(&mut self, offset: i64, priority: u8) {
        if let Some(entry) = self.remove_ready(offset, priority) {
            self.handed_out.insert(offset, entry);
        }
    }

    /// Forgets a ready message (it is missing from the log).
    pub(crate) fn discard(&mut self, offset: i64, priority: u8) {
        self.remove_ready(offset, priority);
    }

    /// Forgets a ready message whatever its priority (it was settled by other means).
    pub(crate) fn remove_ready_offset(&mut self, offset: i64) {
        // At most 256 lookups, rather than a scan of every ready message.
        for priority in 0..=u8::MAX {
            if self.remove_ready(offset, priority).is_some() {
                return;
            }
        }
    }

    /// A handed-out message was settled.
    pub(crate) fn settle(&mut self, offset: i64) {
        self.handed_out.remove(&offset);
    }

    /// A handed-out message goes back to its place, flagged redelivered.
    pub(crate) fn put_back(&mut self, offset: i64) {
        if let Some(entry) = self.handed_out.remove(&offset) {
            self.insert(
                offset,
                Entry {
                    redelivered: true,
                    ..entry
                },
            );
        }
    }

    /// Removes every ready message; returns their offsets, ascending.
    pub(crate) fn drain_ready(&mut self) -> Vec<i64> {
        let mut offsets: Vec<i64> = self.ready.keys().map(|(_, offset)| *offset).collect();
        offsets.sort_unstable();
        self.ready.clear();
        self.bytes = 0;
        offsets
    }

    pub(crate) fn len(&self) -> usize {
        self.ready.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(priority: Option<u8>, body: &'static [u8]) -> Record {
        Record {
            value: Some(Bytes::from_static(body)),
            headers: priority
                .map(|p| {
                    (
                        Bytes::from_static(PRIORITY_HEADER),
                        Some(Bytes::from(vec![p])),
                    )
                })
                .into_iter()
                .collect(),
            ..Record::default()
        }
    }

    #[test]
    fn highest_priority_first_fifo_within_and_clamped() {
        let mut index = ReadyIndex::new(5);
        let records = [
            record(None, b"a"),
            record(Some(3), b"bb"),
            record(Some(9), b"ccc"),
            record(Some(3), b"dddd"),
        ];
        for (offset, r) in records.iter().enumerate() {
            let entry = index.entry_for(r, false);
            index.insert(offset as i64, entry);
        }
        assert_eq!(index.bytes(), 10);
        let mut order = Vec::new();
        while let Some((offset, entry)) = index.first() {
            order.push((offset, entry.priority));
            index.hand_out(offset, entry.priority);
        }
        assert_eq!(order, vec![(2, 5), (1, 3), (3, 3), (0, 0)]);
        assert_eq!((index.len(), index.bytes()), (0, 0));
        index.put_back(3);
        index.put_back(1);
        index.settle(0);
        assert_eq!(
            index.first().map(|(o, e)| (o, e.redelivered)),
            Some((1, true))
        );
        assert_eq!(index.bytes(), 6);
        assert_eq!(index.drain_ready(), vec![1, 3]);
        assert_eq!(index.bytes(), 0);
    }
}
