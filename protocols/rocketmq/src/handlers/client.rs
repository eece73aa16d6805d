//! Client bookkeeping: HEART_BEAT (group membership and subscriptions), UNREGISTER_CLIENT,
//! GET_CONSUMER_LIST_BY_GROUP (the sorted member ids every member allocates queues from) and
//! CHECK_CLIENT_CONFIG (whether a SQL92 subscription compiles and is served). A membership
//! change is pushed to the group's members as NOTIFY_CONSUMER_IDS_CHANGED. Producer groups are
//! remembered too, for transaction checks.
//!
//! With a roster shared by several brokers ([`crate::RocketMq::share_consumer_groups`]) every
//! membership learnt here is recorded there too, the member list is the union of both (so a
//! client that just heartbeated here is never missing), and a group changed through another
//! broker is pushed to its members connected here ([`follow_roster`]).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::required;
use crate::Shared;
use crate::codec::RemotingCommand;
use crate::connection::Connection;
use crate::error::{RequestError, RequestResult, code};
use crate::registry::{ClientChannel, Heartbeat, Subscription};

pub(super) fn heartbeat(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let heartbeat = Heartbeat::parse(&request.body)?;
    connection.client_id.set(&heartbeat.client_id);
    let channel = ClientChannel {
        connection: connection.id,
        serialize_type: request.serialize_type,
        local: connection.local,
    };
    if let Some(roster) = shared.roster.get() {
        for (group, _) in &heartbeat.consumers {
            roster.present(group, &heartbeat.client_id);
        }
    }
    let changed = shared.clients.heartbeat(channel, heartbeat);
    shared.notify_ids_changed(&changed);
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}

pub(super) fn unregister(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let client_id = required(request, "clientID")?;
    if let Some(group) = request.field("producerGroup").filter(|g| !g.is_empty()) {
        shared.clients.unregister_producer(client_id, group);
    }
    if let Some(group) = request.field("consumerGroup").filter(|g| !g.is_empty())
        && shared.clients.unregister(client_id, connection.id, group)
    {
        if let Some(roster) = shared.roster.get()
            && !shared.clients.is_member(group, client_id)
        {
            roster.absent(group, client_id);
        }
        shared.notify_ids_changed(&[group.to_owned()]);
    }
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}

pub(super) async fn consumer_list(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let group = required(request, "consumerGroup")?;
    let mut members = shared.clients.members(group);
    if let Some(roster) = shared.roster.get() {
        match roster.members(group).await {
            Ok(elsewhere) => {
                members.extend(elsewhere);
                members.sort();
                members.dedup();
            }
            // This broker's own members are still an answer; the members rebalance again.
            Err(error) => warn!(group, %error, "the shared consumer list is unavailable"),
        }
    }
    let body = serde_json::to_vec(&json!({ "consumerIdList": members }))?;
    Ok(RemotingCommand::response_to(request, code::SUCCESS).with_body(body))
}

/// CHECK_CLIENT_CONFIG: a consumer with a SQL92 subscription asks before it starts.
pub(super) fn check_client_config(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let body: Value = serde_json::from_slice(&request.body)?;
    let Some(data) = body.get("subscriptionData") else {
        return Ok(RemotingCommand::response_to(request, code::SUCCESS));
    };
    let text = |name: &str| data.get(name).and_then(Value::as_str);
    let subscription =
        Subscription::parse(text("expressionType"), text("subString").unwrap_or("*"));
    match subscription {
        Subscription::Tags(_) => {}
        Subscription::Sql(_) if !shared.settings.enable_property_filter => {
            return Err(RequestError::FilterDisabled("SQL92".to_owned()));
        }
        Subscription::Sql(Err(err)) => {
            let group = body
                .get("group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            warn!(group, error = %err, "a consumer's SQL92 subscription does not compile");
            return Err(RequestError::SubscriptionParseFailed(err));
        }
        Subscription::Sql(Ok(_)) => {}
    }
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}

/// Forgets the memberships a closing connection held; returns the consumer groups that lost a
/// member. Memberships whose client is no longer a member here at all leave the roster too.
pub(crate) fn connection_closed(shared: &Shared, connection: u64) -> Vec<String> {
    let Some(roster) = shared.roster.get() else {
        return shared.clients.connection_closed(connection);
    };
    let held = shared.clients.memberships_on(connection);
    let left = shared.clients.connection_closed(connection);
    for (group, client_id) in held {
        if !shared.clients.is_member(&group, &client_id) {
            roster.absent(&group, &client_id);
        }
    }
    left
}

/// Tells the members connected here of each group whose membership changed through another
/// broker, until `shutdown`.
pub(crate) async fn follow_roster(
    shared: Arc<Shared>,
    mut changes: broadcast::Receiver<String>,
    shutdown: CancellationToken,
) {
    loop {
        let group = tokio::select! {
            () = shutdown.cancelled() => return,
            group = changes.recv() => group,
        };
        match group {
            Ok(group) => shared.notify_ids_changed(&[group]),
            // Missed announcements are advisory: members rebalance on their own every 20 s.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
