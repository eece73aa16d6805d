//! The TRANSACTIONAL_ID resource of `kafka.authorizer`, as Kafka's `KafkaApis` checks it:
//! InitProducerId with a transactional id needs WRITE on that id, FindCoordinator for a
//! transaction (key type 1) DESCRIBE on each id it names (checked in [`super::coordinator`]),
//! both answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53) otherwise. The transaction APIs
//! (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit) are not served yet; when they
//! are they check WRITE through [`Broker::may_use_transactional_id`], the one place this
//! decision is made.
//!
//! Invariants: a check happens before the handler sees the request, so what an authorized
//! request is answered (today: transactions refused by the handlers) does not depend on the
//! ACLs; every refusal is logged with the principal and the id; an id is never created or
//! remembered by a refused request.

use tracing::info;

use super::*;

/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
pub(crate) const TRANSACTIONAL_ID_DENIED: i16 =
    ResponseError::TransactionalIdAuthorizationFailed.code();
/// FindCoordinator's key type of a transactional id (0 is a group).
pub(crate) const TRANSACTION_KEY_TYPE: i8 = 1;

impl Broker {
    /// Whether the caller may `op` the transactional id `id` (WRITE to use it, DESCRIBE to
    /// find its coordinator); a refusal is logged.
    pub(crate) async fn may_use_transactional_id(
        &self,
        context: &RequestContext,
        op: i8,
        id: &str,
    ) -> bool {
        let allowed = self.may(context, op, resource::TRANSACTIONAL_ID, id).await;
        if !allowed {
            info!(
                principal = %context.principal,
                host = %context.host,
                transactional_id = id,
                operation = op,
                "Kafka transactional id refused by the ACL"
            );
        }
        allowed
    }

    /// InitProducerId with a transactional id: WRITE on it, or the refusal to answer.
    pub(super) async fn guard_transactional_init(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> Option<InitProducerIdResponse> {
        if self
            .may_use_transactional_id(context, operation::WRITE, id)
            .await
        {
            return None;
        }
        Some(
            InitProducerIdResponse::default()
                .with_error_code(TRANSACTIONAL_ID_DENIED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
    }
}
