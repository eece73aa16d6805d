//! Applies access changes made through other brokers of a shared metadata store to this
//! broker's open connections (the admin API does it at once for changes made here): a changed
//! grant is swapped into the connections of its vhost before their next method, a deleted user's
//! connections close, a deleted vhost's connections close and its state here goes.
//!
//! Invariants: driven by the store's change channel (`MetadataStore::changes`), so it costs
//! nothing on the local engine, which has none; when the grants cannot be read back after a
//! change, every open connection is refused everything (fail closed) until a retry, every
//! [`RETRY`] even without another change, reads them: a connection never keeps a revoked grant
//! because one read failed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_api::USERS_NAMESPACE;
use tributary_api::users::{BUILT_IN_USER, get_user};

use super::{PERMISSION_NAMESPACE, VHOST_NAMESPACE, vhost_exists};
use crate::admin::AmqpAdmin;
use crate::error::AmqpError;

/// Wait before retrying a pass that failed.
const RETRY: Duration = Duration::from_secs(1);

/// Follows the store's changes until `shutdown`; returns at once for a store without changes.
pub(crate) async fn follow_changes(admin: AmqpAdmin, shutdown: CancellationToken) {
    let Some(mut changes) = admin.store().changes() else {
        return;
    };
    let mut seen = generations(&admin);
    let mut failed = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed(), if !failed => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(RETRY), if failed => {}
        }
        let now = generations(&admin);
        match apply(&admin, seen, now, failed).await {
            Ok(()) => {
                seen = now;
                failed = false;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot apply another broker's access change; retrying");
                failed = true;
            }
        }
    }
}

fn generations(admin: &AmqpAdmin) -> [u64; 3] {
    let store = admin.store();
    [
        store.generation(PERMISSION_NAMESPACE),
        store.generation(USERS_NAMESPACE),
        store.generation(VHOST_NAMESPACE),
    ]
}

/// Applies what moved from `seen` to `now` (everything after a failure).
async fn apply(
    admin: &AmqpAdmin,
    seen: [u64; 3],
    now: [u64; 3],
    everything: bool,
) -> Result<(), AmqpError> {
    if (everything || seen[0] != now[0])
        && let Err(error) = admin.refresh_grants(None).await
    {
        // Fail closed: a grant revoked elsewhere must not stay usable here.
        admin.suspend_grants();
        return Err(error);
    }
    let connections = admin.connections();
    if everything || seen[1] != now[1] {
        let mut users: Vec<&str> = connections.iter().map(|c| c.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        for user in users {
            if user != BUILT_IN_USER && get_user(admin.store(), user).await?.is_none() {
                let reason = format!("user '{user}' is deleted");
                admin.close_user_connections(user, &reason);
            }
        }
    }
    if everything || seen[2] != now[2] {
        let mut vhosts: Vec<&str> = connections.iter().map(|c| c.vhost.as_str()).collect();
        vhosts.sort_unstable();
        vhosts.dedup();
        for vhost in vhosts {
            if !vhost_exists(admin.store(), vhost).await? {
                admin.forget_vhost(vhost).await?;
            }
        }
    }
    Ok(())
}
