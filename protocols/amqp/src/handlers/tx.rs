//! tx.select / tx.commit / tx.rollback: a transactional channel holds its publishes and its
//! acks, nacks and rejects until commit; rollback discards the publishes and puts the settled
//! deliveries back to unacked (RabbitMQ semantics). Confirm and tx modes exclude each other.

use crate::channel::{TxWork, Unacked};
use crate::codec::methods::Method;
use crate::error::{AmqpError, PRECONDITION_FAILED};
use crate::session::Session;

impl Session {
    pub(crate) async fn tx_select(&mut self, channel: u16) -> Result<(), AmqpError> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        if state.confirm {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "cannot switch from confirm to tx mode",
            ));
        }
        state.tx = true;
        self.send_method(channel, &Method::TxSelectOk).await
    }

    fn take_tx_work(&mut self, channel: u16) -> Result<TxWork, AmqpError> {
        match self.channels.get_mut(&channel) {
            Some(state) if state.tx => Ok(std::mem::take(&mut state.tx_work)),
            _ => Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "channel is not transactional",
            )),
        }
    }

    pub(crate) async fn tx_commit(&mut self, channel: u16) -> Result<(), AmqpError> {
        let work = self.take_tx_work(channel)?;
        for targets in work.publishes {
            if !self.store(targets).await {
                return Err(AmqpError::channel(
                    PRECONDITION_FAILED,
                    "a transactional publish could not be stored",
                ));
            }
        }
        // Settles keep their order; consecutive ones of one kind go to the engine together.
        let mut run: Vec<Unacked> = Vec::new();
        let mut kind = None;
        for (_, one, requeue) in work.settles {
            if kind.is_some_and(|k| k != requeue) {
                self.apply_settles(&std::mem::take(&mut run), kind.flatten())
                    .await?;
            }
            kind = Some(requeue);
            run.push(one);
        }
        if let Some(requeue) = kind {
            self.apply_settles(&run, requeue).await?;
        }
        self.send_method(channel, &Method::TxCommitOk).await
    }

    pub(crate) async fn tx_rollback(&mut self, channel: u16) -> Result<(), AmqpError> {
        let work = self.take_tx_work(channel)?;
        if let Some(state) = self.channels.get(&channel) {
            let mut deliveries = state.deliveries.lock().await;
            for (tag, one, _) in work.settles {
                deliveries.unacked.insert(tag, one);
            }
        }
        self.send_method(channel, &Method::TxRollbackOk).await
    }
}
