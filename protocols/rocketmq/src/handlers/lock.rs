//! LOCK_BATCH_MQ and UNLOCK_BATCH_MQ: the queue locks orderly consumers hold (see
//! [`crate::locks`]). Both take a JSON body `{"consumerGroup","clientId","mqSet":[...]}`;
//! LOCK answers `{"lockOKMQSet":[...]}` with the queues the client now holds.

use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use crate::Shared;
use crate::codec::RemotingCommand;
use crate::error::{RequestResult, code};
use crate::locks::MessageQueue;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockBody {
    consumer_group: String,
    client_id: String,
    #[serde(default)]
    mq_set: Vec<MessageQueue>,
}

pub(super) fn lock(shared: &Shared, request: &RemotingCommand) -> RequestResult<RemotingCommand> {
    let body: LockBody = serde_json::from_slice(&request.body)?;
    let granted = shared.locks.lock(
        &body.consumer_group,
        &body.client_id,
        body.mq_set,
        Instant::now(),
    );
    let body = serde_json::to_vec(&json!({ "lockOKMQSet": granted }))?;
    Ok(RemotingCommand::response_to(request, code::SUCCESS).with_body(body))
}

pub(super) fn unlock(shared: &Shared, request: &RemotingCommand) -> RequestResult<RemotingCommand> {
    let body: LockBody = serde_json::from_slice(&request.body)?;
    shared
        .locks
        .unlock(&body.consumer_group, &body.client_id, body.mq_set);
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}
