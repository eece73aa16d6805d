//! Request handlers, one module per method family; each adds methods to [`crate::session::Session`].

mod basic;
mod channel;
mod confirms;
pub(crate) mod consume;
mod exchange;
pub(crate) mod publish;
mod queue;
pub(crate) mod reply_to;
mod stream;
mod tx;

pub(crate) use stream::store_batch;
