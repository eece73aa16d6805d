//! Raises the soft limit on open file descriptors to the hard limit at start-up, as RabbitMQ
//! and Kafka's start scripts do: every connection and every open segment file takes one, and
//! a soft limit of 1024 (a common default) runs out long before the hard one.
//!
//! Invariant: the limit is only ever raised, never lowered, and a failure to raise it is a
//! warning, not a reason to refuse to start (the broker still serves within the old limit).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tracing::{info, warn};

/// The soft limit after [`raise_open_files_limit`], for tests and logs; `None` is unlimited.
pub fn open_files_soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// A limit as logged: the number, or `unlimited`.
fn shown(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |value| value.to_string())
}

/// Sets the soft RLIMIT_NOFILE to the hard limit and logs both values.
pub fn raise_open_files_limit() {
    let before = getrlimit(Resource::Nofile);
    let wanted = before.maximum;
    let already = match (before.current, wanted) {
        (None, _) => true,
        (Some(current), Some(maximum)) => current >= maximum,
        (Some(_), None) => false,
    };
    if already {
        info!(
            soft = %shown(before.current),
            hard = %shown(before.maximum),
            "open file descriptor limit is already at the hard limit"
        );
        return;
    }
    let raised = Rlimit {
        current: wanted,
        maximum: before.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => info!(
            soft_before = %shown(before.current),
            soft = %shown(open_files_soft_limit()),
            hard = %shown(before.maximum),
            "raised the open file descriptor limit to the hard limit"
        ),
        Err(err) => warn!(
            soft = %shown(before.current),
            hard = %shown(before.maximum),
            error = %err,
            "cannot raise the open file descriptor limit; serving within the soft limit"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let start = getrlimit(Resource::Nofile);
        if let Some(hard) = start.maximum {
            // Lowered a little first (harmless to other tests) so the raise has work to do.
            let lowered = Rlimit {
                current: Some(hard - 1),
                maximum: Some(hard),
            };
            setrlimit(Resource::Nofile, lowered).unwrap();
            assert_eq!(open_files_soft_limit(), Some(hard - 1));
        }
        raise_open_files_limit();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.current, after.maximum);
    }
}
