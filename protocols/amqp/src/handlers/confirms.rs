//! Publisher confirms of one flush, coalesced as RabbitMQ sends them: a run of stored
//! publishes on a channel goes out as one `basic.ack multiple=true` with the run's last
//! sequence number instead of one `basic.ack` each.
//!
//! A publisher at full rate otherwise gets one frame per message back, on the connection its
//! consumers' deliveries also use; the client reads and matches every one of them (lapin's
//! I/O loop, shared with the deliveries and the consumer's acks, spends its time there).
//!
//! Invariant: `multiple=true` up to tag `t` is sent only when every tag below the run's first
//! one is already settled (acked or nacked) on the channel ([`Settled`]): the ack then covers
//! exactly the run. A run that does not start right after the settled prefix (a sequence
//! number that was never confirmed, so far impossible) is confirmed tag by tag, as before.
//! Nacks are never coalesced, and a channel's frames keep publish order.

use crate::codec::methods::Method;

/// The highest sequence number up to which every publish on a channel was confirmed.
pub(crate) type Settled = u64;

/// Moves `mark` to `seq` when `seq` follows it; whether it did.
pub(crate) fn advance(mark: Option<&mut Settled>, seq: u64) -> bool {
    match mark {
        Some(mark) if *mark + 1 == seq => {
            *mark = seq;
            true
        }
        _ => false,
    }
}

/// The frames confirming `confirms` (channel, sequence number, stored), in order per channel.
/// `advance(channel, seq)` moves the channel's [`Settled`] mark to `seq` and returns true when
/// the mark is `seq - 1`; else (a gap, or a channel no longer open) it returns false and the
/// publish is confirmed on its own.
pub(crate) fn confirm_frames(
    confirms: impl IntoIterator<Item = (u16, u64, bool)>,
    mut advance: impl FnMut(u16, u64) -> bool,
) -> Vec<(u16, Method)> {
    let mut frames = Vec::new();
    // Per channel: the open run (first, last), all stored, right after the settled prefix.
    let mut runs: Vec<(u16, u64, u64)> = Vec::new();
    let close_run = |runs: &mut Vec<(u16, u64, u64)>, frames: &mut Vec<_>, channel: u16| {
        if let Some(at) = runs.iter().position(|(c, _, _)| *c == channel) {
            let (channel, first, last) = runs.swap_remove(at);
            frames.push((
                channel,
                Method::BasicAck {
                    delivery_tag: last,
                    multiple: last > first,
                },
            ));
        }
    };
    for (channel, seq, stored) in confirms {
        let next = advance(channel, seq);
        if stored && next {
            match runs.iter_mut().find(|(c, _, _)| *c == channel) {
                Some(run) => run.2 = seq,
                None => runs.push((channel, seq, seq)),
            }
            continue;
        }
        close_run(&mut runs, &mut frames, channel);
        let method = if stored {
            Method::BasicAck {
                delivery_tag: seq,
                multiple: false,
            }
        } else {
            Method::BasicNack {
                delivery_tag: seq,
                multiple: false,
                requeue: false,
            }
        };
        frames.push((channel, method));
    }
    let channels: Vec<u16> = runs.iter().map(|(c, _, _)| *c).collect();
    for channel in channels {
        close_run(&mut runs, &mut frames, channel);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ack(tag: u64, multiple: bool) -> Method {
        Method::BasicAck {
            delivery_tag: tag,
            multiple,
        }
    }

    fn nack(tag: u64) -> Method {
        Method::BasicNack {
            delivery_tag: tag,
            multiple: false,
            requeue: false,
        }
    }

    fn run(marks: &mut HashMap<u16, Settled>, confirms: &[(u16, u64, bool)]) -> Vec<(u16, Method)> {
        confirm_frames(confirms.iter().copied(), |c, seq| {
            advance(marks.get_mut(&c), seq)
        })
    }

    #[test]
    fn a_run_of_stored_publishes_is_one_multiple_ack() {
        let mut marks = HashMap::from([(1, 0)]);
        let frames = run(&mut marks, &[(1, 1, true), (1, 2, true), (1, 3, true)]);
        assert_eq!(frames, vec![(1, ack(3, true))]);
        assert_eq!(marks[&1], 3);
        // The next flush continues from the mark; a lone publish is a plain ack.
        assert_eq!(run(&mut marks, &[(1, 4, true)]), vec![(1, ack(4, false))]);
    }

    #[test]
    fn a_nack_splits_runs_and_keeps_order() {
        let mut marks = HashMap::from([(1, 0)]);
        let frames = run(
            &mut marks,
            &[
                (1, 1, true),
                (1, 2, true),
                (1, 3, false),
                (1, 4, true),
                (1, 5, true),
            ],
        );
        // ack multiple 2 covers 1-2; the nack settles 3; ack multiple 5 covers only 4-5.
        assert_eq!(
            frames,
            vec![(1, ack(2, true)), (1, nack(3)), (1, ack(5, true))]
        );
        assert_eq!(marks[&1], 5);
    }

    #[test]
    fn channels_are_coalesced_separately() {
        let mut marks = HashMap::from([(1, 10), (2, 0)]);
        let frames = run(
            &mut marks,
            &[(1, 11, true), (2, 1, true), (1, 12, true), (2, 2, true)],
        );
        assert_eq!(frames.len(), 2);
        assert!(frames.contains(&(1, ack(12, true))));
        assert!(frames.contains(&(2, ack(2, true))));
    }

    #[test]
    fn a_gap_before_the_run_means_one_ack_each() {
        // Tag 3 was never confirmed: a multiple ack of 5 would confirm it too.
        let mut marks = HashMap::from([(1, 2)]);
        let frames = run(&mut marks, &[(1, 4, true), (1, 5, true)]);
        assert_eq!(frames, vec![(1, ack(4, false)), (1, ack(5, false))]);
        assert_eq!(marks[&1], 2, "the mark stays below the gap");
        // A channel no longer open is confirmed tag by tag as well.
        let frames = run(&mut marks, &[(7, 1, true), (7, 2, true)]);
        assert_eq!(frames, vec![(7, ack(1, false)), (7, ack(2, false))]);
    }
}
