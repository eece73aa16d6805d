//! Message bodies: OMB's payload choices (a fixed size, a payload file, randomized pools)
//! with the send time stamped over the first [`TIMESTAMP_BYTES`] bytes of each message, so a
//! consumer measures end-to-end latency from the body alone, whatever the protocol.
//!
//! Invariant: every body is at least [`TIMESTAMP_BYTES`] long (checked when the pool is built).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::workload::{TIMESTAMP_BYTES, Workload};

/// Microseconds since the Unix epoch (wall clock: producer and consumer are one process here,
/// but an external consumer on the same host reads the same clock).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes the send time over the first bytes of `body`.
pub fn stamp(body: &mut [u8], micros: u64) {
    body[..TIMESTAMP_BYTES].copy_from_slice(&micros.to_be_bytes());
}

/// The send time a body carries, or `None` for a body too short to carry one.
pub fn sent_micros(body: &[u8]) -> Option<u64> {
    let head: [u8; TIMESTAMP_BYTES] = body.get(..TIMESTAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_be_bytes(head))
}

/// The bodies a producer cycles through.
#[derive(Debug, Clone)]
pub struct Pool {
    bodies: Vec<Vec<u8>>,
}

impl Pool {
    /// Builds the pool a workload asks for: the payload file's bytes, else `messageSize`
    /// bytes; with `useRandomizedPayloads`, `randomizedPayloadPoolSize` bodies whose last
    /// `randomBytesRatio` share is pseudo-random (the rest zeros, so it compresses as OMB's).
    pub fn new(workload: &Workload, base_dir: &std::path::Path) -> Result<Self, Error> {
        let base = match &workload.payload_file {
            Some(file) => {
                let path = base_dir.join(file);
                let bytes = std::fs::read(&path).map_err(|err| Error::io(&path, err))?;
                if bytes.len() < TIMESTAMP_BYTES {
                    return Err(Error::Workload(format!(
                        "payloadFile {} has {} bytes; at least {TIMESTAMP_BYTES} are needed",
                        path.display(),
                        bytes.len()
                    )));
                }
                bytes
            }
            None => vec![0xAB; workload.message_size],
        };
        if !workload.use_randomized_payloads {
            return Ok(Self { bodies: vec![base] });
        }
        let count = workload.randomized_payload_pool_size.max(1);
        let random = (base.len() as f64 * workload.random_bytes_ratio) as usize;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ now_micros();
        let bodies = (0..count)
            .map(|_| {
                let mut body = vec![0u8; base.len()];
                let start = base.len() - random;
                for byte in &mut body[start..] {
                    // xorshift64: cheap, and only variety matters here.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *byte = seed as u8;
                }
                body
            })
            .collect();
        Ok(Self { bodies })
    }

    /// The `n`th body (cycling), stamped with the current time.
    pub fn stamped(&self, n: usize) -> Vec<u8> {
        let mut body = self.bodies[n % self.bodies.len()].clone();
        stamp(&mut body, now_micros());
        body
    }

    pub fn message_size(&self) -> usize {
        self.bodies[0].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_short_bodies_carry_none() {
        let mut body = vec![0; 16];
        stamp(&mut body, 1_234_567);
        assert_eq!(sent_micros(&body), Some(1_234_567));
        assert_eq!(sent_micros(&[1, 2, 3]), None);
    }

    #[test]
    fn randomized_pool_has_the_asked_size_and_variety() {
        let mut w = Workload::parse(
            "name: r\ntopics: 1\npartitionsPerTopic: 1\nmessageSize: 100\nuseRandomizedPayloads: true\n\
             randomBytesRatio: 0.5\nrandomizedPayloadPoolSize: 4\nsubscriptionsPerTopic: 1\n\
             producersPerTopic: 1\nconsumerPerSubscription: 1\ntestDurationMinutes: 1\n",
        )
        .unwrap();
        let pool = Pool::new(&w, std::path::Path::new(".")).unwrap();
        assert_eq!(pool.bodies.len(), 4);
        assert!(
            pool.bodies
                .iter()
                .all(|b| b.len() == 100 && b[..50].iter().all(|&x| x == 0))
        );
        assert_ne!(pool.bodies[0][50..], pool.bodies[1][50..]);
        w.payload_file = Some("no-such-file".into());
        assert!(matches!(
            Pool::new(&w, std::path::Path::new("/tmp/h19-none")),
            Err(Error::Io { .. })
        ));
    }
}
