//! exchange.declare and exchange.delete.

use crate::codec::methods::{Binding, ExchangeDeclare, Method};
use crate::definitions::EXCHANGE_NAMESPACE;
use crate::error::AmqpError;
use crate::session::Session;

impl Session {
    pub(crate) async fn exchange_declare(
        &mut self,
        channel: u16,
        decl: ExchangeDeclare,
    ) -> Result<(), AmqpError> {
        let topology = &self.shared.topology;
        topology.refresh().await?;
        let record = topology.declare_exchange(&decl)?;
        topology.persist(EXCHANGE_NAMESPACE, record).await?;
        if decl.nowait {
            return Ok(());
        }
        self.send_method(channel, &Method::ExchangeDeclareOk).await
    }

    pub(crate) async fn exchange_bind(
        &mut self,
        channel: u16,
        binding: Binding,
        bind: bool,
    ) -> Result<(), AmqpError> {
        let Binding {
            destination,
            source,
            routing_key,
            nowait,
            arguments,
        } = binding;
        self.shared.topology.refresh().await?;
        self.shared
            .topology
            .bind_exchange(&destination, &source, &routing_key, &arguments, bind)
            .await?;
        if nowait {
            return Ok(());
        }
        let reply = if bind {
            Method::ExchangeBindOk
        } else {
            Method::ExchangeUnbindOk
        };
        self.send_method(channel, &reply).await
    }

    pub(crate) async fn exchange_delete(
        &mut self,
        channel: u16,
        exchange: &str,
        if_unused: bool,
        nowait: bool,
    ) -> Result<(), AmqpError> {
        self.shared
            .topology
            .delete_exchange(exchange, if_unused)
            .await?;
        if nowait {
            return Ok(());
        }
        self.send_method(channel, &Method::ExchangeDeleteOk).await
    }
}
