//! Copies of the topology for the admin API (taken under the lock, released at once).

use super::{Exchange, QueueInfo, Topology};

impl Topology {
    /// Every exchange with its bindings, by name.
    pub fn exchanges_snapshot(&self) -> Vec<(String, Exchange)> {
        let state = self.state.lock();
        let mut out: Vec<(String, Exchange)> = state
            .exchanges
            .iter()
            .map(|(name, exchange)| (name.clone(), exchange.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every queue's AMQP attributes, by name.
    pub fn queues_snapshot(&self) -> Vec<(String, QueueInfo)> {
        let state = self.state.lock();
        let mut out: Vec<(String, QueueInfo)> = state
            .queues
            .iter()
            .map(|(name, info)| (name.clone(), info.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
