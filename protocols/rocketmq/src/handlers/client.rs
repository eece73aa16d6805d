//! Client bookkeeping: HEART_BEAT (group membership and subscriptions), UNREGISTER_CLIENT and
//! GET_CONSUMER_LIST_BY_GROUP (the sorted member ids every member allocates queues from). A
//! membership change is pushed to the group's members as NOTIFY_CONSUMER_IDS_CHANGED. Producer
//! groups are remembered too, for transaction checks.

use serde_json::json;

use super::required;
use crate::Shared;
use crate::codec::RemotingCommand;
use crate::connection::Connection;
use crate::error::{RequestResult, code};
use crate::registry::{ClientChannel, Heartbeat};

pub(super) fn heartbeat(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let heartbeat = Heartbeat::parse(&request.body)?;
    let channel = ClientChannel {
        connection: connection.id,
        serialize_type: request.serialize_type,
        local: connection.local,
    };
    let changed = shared.clients.heartbeat(channel, heartbeat);
    shared.notify_ids_changed(&changed);
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}

pub(super) fn unregister(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let client_id = required(request, "clientID")?;
    if let Some(group) = request.field("producerGroup").filter(|g| !g.is_empty()) {
        shared.clients.unregister_producer(client_id, group);
    }
    if let Some(group) = request.field("consumerGroup").filter(|g| !g.is_empty())
        && shared.clients.unregister(client_id, group)
    {
        shared.notify_ids_changed(&[group.to_owned()]);
    }
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}

pub(super) fn consumer_list(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let group = required(request, "consumerGroup")?;
    let members = shared.clients.members(group);
    let body = serde_json::to_vec(&json!({ "consumerIdList": members }))?;
    Ok(RemotingCommand::response_to(request, code::SUCCESS).with_body(body))
}
