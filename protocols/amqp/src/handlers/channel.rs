//! channel.flow, basic.qos and confirm.select.

use crate::codec::methods::Method;
use crate::error::{AmqpError, NOT_IMPLEMENTED, PRECONDITION_FAILED};
use crate::session::Session;

impl Session {
    pub(crate) async fn channel_flow(
        &mut self,
        channel: u16,
        active: bool,
    ) -> Result<(), AmqpError> {
        if !active {
            // RabbitMQ answers a client's flow-stop the same way.
            return Err(AmqpError::connection(NOT_IMPLEMENTED, "active=false"));
        }
        self.send_method(channel, &Method::ChannelFlowOk { active })
            .await
    }

    pub(crate) async fn basic_qos(
        &mut self,
        channel: u16,
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    ) -> Result<(), AmqpError> {
        if prefetch_size != 0 {
            return Err(AmqpError::connection(
                NOT_IMPLEMENTED,
                format_args!("prefetch_size!=0 ({prefetch_size})"),
            ));
        }
        if let Some(state) = self.channels.get_mut(&channel) {
            if global {
                // RabbitMQ's channel-wide limit, shared by all of the channel's consumers.
                state.global_prefetch_count = prefetch_count;
                state.channel_credit.set_limit(prefetch_count);
            } else {
                state.prefetch_count = prefetch_count;
                // Running consumers follow too: kombu/Celery, told this is not RabbitMQ, expect
                // the spec's channel-wide meaning and raise the prefetch while consuming.
                for consumer in state.consumers.values() {
                    if let Some(credit) = &consumer.credit {
                        credit.set_limit(prefetch_count);
                    }
                }
            }
        }
        self.send_method(channel, &Method::BasicQosOk).await
    }

    pub(crate) async fn confirm_select(
        &mut self,
        channel: u16,
        nowait: bool,
    ) -> Result<(), AmqpError> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        if state.tx {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "cannot switch from tx to confirm mode",
            ));
        }
        state.confirm = true;
        if nowait {
            return Ok(());
        }
        self.send_method(channel, &Method::ConfirmSelectOk).await
    }
}
