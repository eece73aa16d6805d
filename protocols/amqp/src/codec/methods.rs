//! Method frames: `class_id: u16, method_id: u16, arguments`. [`Method::decode`] reads every
//! method a client sends; [`Method::encode`] writes every method the server sends (and the
//! close pair, which travels both ways). Reserved arguments (`ticket`, `out-of-band`,
//! `known-hosts`, `insist`) are read and dropped; `basic.qos` keeps `prefetch_size` so the server
//! can refuse a non-zero one as RabbitMQ does.

use bytes::{BufMut, Bytes, BytesMut};

use super::CodecError;
use super::table::FieldTable;
use super::wire::{Reader, bit, put_bits, put_longstr, put_shortstr};

/// `(class_id, method_id)` of a method, for `close` replies.
pub type MethodId = (u16, u16);

/// One AMQP 0-9-1 method.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    ConnectionStart {
        server_properties: FieldTable,
        mechanisms: String,
        locales: String,
    },
    ConnectionStartOk {
        client_properties: FieldTable,
        mechanism: String,
        response: Bytes,
    },
    ConnectionSecureOk {
        response: Bytes,
    },
    ConnectionTune {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    },
    ConnectionTuneOk {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    },
    ConnectionOpen {
        virtual_host: String,
    },
    ConnectionOpenOk,
    ConnectionClose {
        reply_code: u16,
        reply_text: String,
        class_id: u16,
        method_id: u16,
    },
    ConnectionCloseOk,
    ConnectionBlocked {
        reason: String,
    },
    ConnectionUnblocked,
    /// A new secret for the logged-in user (RabbitMQ's extension, meant for expiring tokens).
    ConnectionUpdateSecret {
        new_secret: Bytes,
        reason: String,
    },
    ConnectionUpdateSecretOk,
    ChannelOpen,
    ChannelOpenOk,
    ChannelFlow {
        active: bool,
    },
    ChannelFlowOk {
        active: bool,
    },
    ChannelClose {
        reply_code: u16,
        reply_text: String,
        class_id: u16,
        method_id: u16,
    },
    ChannelCloseOk,
    ExchangeDeclare(ExchangeDeclare),
    ExchangeDeclareOk,
    ExchangeDelete {
        exchange: String,
        if_unused: bool,
        nowait: bool,
    },
    ExchangeDeleteOk,
    ExchangeBind(Binding),
    ExchangeBindOk,
    ExchangeUnbind(Binding),
    ExchangeUnbindOk,
    QueueDeclare(QueueDeclare),
    QueueDeclareOk {
        queue: String,
        message_count: u32,
        consumer_count: u32,
    },
    QueueBind(Binding),
    QueueBindOk,
    QueuePurge {
        queue: String,
        nowait: bool,
    },
    QueuePurgeOk {
        message_count: u32,
    },
    QueueDelete {
        queue: String,
        if_unused: bool,
        if_empty: bool,
        nowait: bool,
    },
    QueueDeleteOk {
        message_count: u32,
    },
    QueueUnbind(Binding),
    QueueUnbindOk,
    BasicQos {
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    },
    BasicQosOk,
    BasicConsume(Consume),
    BasicConsumeOk {
        consumer_tag: String,
    },
    BasicCancel {
        consumer_tag: String,
        nowait: bool,
    },
    BasicCancelOk {
        consumer_tag: String,
    },
    BasicPublish {
        exchange: String,
        routing_key: String,
        mandatory: bool,
        immediate: bool,
    },
    BasicReturn {
        reply_code: u16,
        reply_text: String,
        exchange: String,
        routing_key: String,
    },
    BasicDeliver {
        consumer_tag: String,
        delivery_tag: u64,
        redelivered: bool,
        exchange: String,
        routing_key: String,
    },
    BasicGet {
        queue: String,
        no_ack: bool,
    },
    BasicGetOk {
        delivery_tag: u64,
        redelivered: bool,
        exchange: String,
        routing_key: String,
        message_count: u32,
    },
    BasicGetEmpty,
    BasicAck {
        delivery_tag: u64,
        multiple: bool,
    },
    BasicReject {
        delivery_tag: u64,
        requeue: bool,
    },
    BasicRecoverAsync {
        requeue: bool,
    },
    BasicRecover {
        requeue: bool,
    },
    BasicRecoverOk,
    BasicNack {
        delivery_tag: u64,
        multiple: bool,
        requeue: bool,
    },
    ConfirmSelect {
        nowait: bool,
    },
    ConfirmSelectOk,
    TxSelect,
    TxSelectOk,
    TxCommit,
    TxCommitOk,
    TxRollback,
    TxRollbackOk,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeDeclare {
    pub exchange: String,
    pub kind: String,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub nowait: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueDeclare {
    pub queue: String,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub nowait: bool,
    pub arguments: FieldTable,
}

/// queue.bind / queue.unbind / exchange.bind / exchange.unbind: `destination` is the queue
/// (or destination exchange), `source` the exchange.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Binding {
    pub destination: String,
    pub source: String,
    pub routing_key: String,
    pub nowait: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Consume {
    pub queue: String,
    pub consumer_tag: String,
    pub no_local: bool,
    pub no_ack: bool,
    pub exclusive: bool,
    pub nowait: bool,
    pub arguments: FieldTable,
}

/// Reads the class and method ids without decoding the arguments (for error replies).
pub fn peek_id(payload: &[u8]) -> Option<MethodId> {
    let ids = payload.get(..4)?;
    Some((
        u16::from_be_bytes([ids[0], ids[1]]),
        u16::from_be_bytes([ids[2], ids[3]]),
    ))
}

impl Method {
    /// Decodes a method a client sends.
    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(payload);
        let class_id = r.u16()?;
        let method_id = r.u16()?;
        let method = match (class_id, method_id) {
            (10, 11) => Self::ConnectionStartOk {
                client_properties: FieldTable::decode(&mut r)?,
                mechanism: r.shortstr()?,
                response: {
                    let response = r.longstr()?;
                    let _locale = r.shortstr()?;
                    response
                },
            },
            (10, 21) => Self::ConnectionSecureOk {
                response: r.longstr()?,
            },
            (10, 31) => Self::ConnectionTuneOk {
                channel_max: r.u16()?,
                frame_max: r.u32()?,
                heartbeat: r.u16()?,
            },
            (10, 40) => {
                let virtual_host = r.shortstr()?;
                let _capabilities = r.shortstr()?;
                let _insist = r.u8()?;
                Self::ConnectionOpen { virtual_host }
            }
            (10, 50) => Self::ConnectionClose {
                reply_code: r.u16()?,
                reply_text: r.shortstr()?,
                class_id: r.u16()?,
                method_id: r.u16()?,
            },
            (10, 51) => Self::ConnectionCloseOk,
            (10, 70) => Self::ConnectionUpdateSecret {
                new_secret: r.longstr()?,
                reason: r.shortstr()?,
            },
            (20, 10) => {
                let _out_of_band = r.shortstr()?;
                Self::ChannelOpen
            }
            (20, 20) => Self::ChannelFlow {
                active: bit(r.u8()?, 0),
            },
            (20, 21) => Self::ChannelFlowOk {
                active: bit(r.u8()?, 0),
            },
            (20, 40) => Self::ChannelClose {
                reply_code: r.u16()?,
                reply_text: r.shortstr()?,
                class_id: r.u16()?,
                method_id: r.u16()?,
            },
            (20, 41) => Self::ChannelCloseOk,
            (40, 10) => {
                let _ticket = r.u16()?;
                let exchange = r.shortstr()?;
                let kind = r.shortstr()?;
                let bits = r.u8()?;
                Self::ExchangeDeclare(ExchangeDeclare {
                    exchange,
                    kind,
                    passive: bit(bits, 0),
                    durable: bit(bits, 1),
                    auto_delete: bit(bits, 2),
                    internal: bit(bits, 3),
                    nowait: bit(bits, 4),
                    arguments: FieldTable::decode(&mut r)?,
                })
            }
            (40, 20) => {
                let _ticket = r.u16()?;
                let exchange = r.shortstr()?;
                let bits = r.u8()?;
                Self::ExchangeDelete {
                    exchange,
                    if_unused: bit(bits, 0),
                    nowait: bit(bits, 1),
                }
            }
            (40, 30) => Self::ExchangeBind(decode_binding(&mut r, true)?),
            (40, 40) => Self::ExchangeUnbind(decode_binding(&mut r, true)?),
            (50, 10) => {
                let _ticket = r.u16()?;
                let queue = r.shortstr()?;
                let bits = r.u8()?;
                Self::QueueDeclare(QueueDeclare {
                    queue,
                    passive: bit(bits, 0),
                    durable: bit(bits, 1),
                    exclusive: bit(bits, 2),
                    auto_delete: bit(bits, 3),
                    nowait: bit(bits, 4),
                    arguments: FieldTable::decode(&mut r)?,
                })
            }
            (50, 20) => Self::QueueBind(decode_binding(&mut r, true)?),
            (50, 30) => {
                let _ticket = r.u16()?;
                Self::QueuePurge {
                    queue: r.shortstr()?,
                    nowait: bit(r.u8()?, 0),
                }
            }
            (50, 40) => {
                let _ticket = r.u16()?;
                let queue = r.shortstr()?;
                let bits = r.u8()?;
                Self::QueueDelete {
                    queue,
                    if_unused: bit(bits, 0),
                    if_empty: bit(bits, 1),
                    nowait: bit(bits, 2),
                }
            }
            (50, 50) => Self::QueueUnbind(decode_binding(&mut r, false)?),
            (60, 10) => Self::BasicQos {
                prefetch_size: r.u32()?,
                prefetch_count: r.u16()?,
                global: bit(r.u8()?, 0),
            },
            (60, 20) => {
                let _ticket = r.u16()?;
                let queue = r.shortstr()?;
                let consumer_tag = r.shortstr()?;
                let bits = r.u8()?;
                Self::BasicConsume(Consume {
                    queue,
                    consumer_tag,
                    no_local: bit(bits, 0),
                    no_ack: bit(bits, 1),
                    exclusive: bit(bits, 2),
                    nowait: bit(bits, 3),
                    arguments: FieldTable::decode(&mut r)?,
                })
            }
            (60, 30) => Self::BasicCancel {
                consumer_tag: r.shortstr()?,
                nowait: bit(r.u8()?, 0),
            },
            (60, 31) => Self::BasicCancelOk {
                consumer_tag: r.shortstr()?,
            },
            (60, 40) => {
                let _ticket = r.u16()?;
                let exchange = r.shortstr()?;
                let routing_key = r.shortstr()?;
                let bits = r.u8()?;
                Self::BasicPublish {
                    exchange,
                    routing_key,
                    mandatory: bit(bits, 0),
                    immediate: bit(bits, 1),
                }
            }
            (60, 70) => {
                let _ticket = r.u16()?;
                Self::BasicGet {
                    queue: r.shortstr()?,
                    no_ack: bit(r.u8()?, 0),
                }
            }
            (60, 80) => Self::BasicAck {
                delivery_tag: r.u64()?,
                multiple: bit(r.u8()?, 0),
            },
            (60, 90) => Self::BasicReject {
                delivery_tag: r.u64()?,
                requeue: bit(r.u8()?, 0),
            },
            (60, 100) => Self::BasicRecoverAsync {
                requeue: bit(r.u8()?, 0),
            },
            (60, 110) => Self::BasicRecover {
                requeue: bit(r.u8()?, 0),
            },
            (60, 120) => {
                let delivery_tag = r.u64()?;
                let bits = r.u8()?;
                Self::BasicNack {
                    delivery_tag,
                    multiple: bit(bits, 0),
                    requeue: bit(bits, 1),
                }
            }
            (85, 10) => Self::ConfirmSelect {
                nowait: bit(r.u8()?, 0),
            },
            (90, 10) => Self::TxSelect,
            (90, 20) => Self::TxCommit,
            (90, 30) => Self::TxRollback,
            (class_id, method_id) => {
                return Err(CodecError::UnknownMethod {
                    class_id,
                    method_id,
                });
            }
        };
        Ok(method)
    }

    /// `(class_id, method_id)` of this method.
    pub fn id(&self) -> MethodId {
        match self {
            Self::ConnectionStart { .. } => (10, 10),
            Self::ConnectionStartOk { .. } => (10, 11),
            Self::ConnectionSecureOk { .. } => (10, 21),
            Self::ConnectionTune { .. } => (10, 30),
            Self::ConnectionTuneOk { .. } => (10, 31),
            Self::ConnectionOpen { .. } => (10, 40),
            Self::ConnectionOpenOk => (10, 41),
            Self::ConnectionClose { .. } => (10, 50),
            Self::ConnectionCloseOk => (10, 51),
            Self::ConnectionBlocked { .. } => (10, 60),
            Self::ConnectionUnblocked => (10, 61),
            Self::ConnectionUpdateSecret { .. } => (10, 70),
            Self::ConnectionUpdateSecretOk => (10, 71),
            Self::ChannelOpen => (20, 10),
            Self::ChannelOpenOk => (20, 11),
            Self::ChannelFlow { .. } => (20, 20),
            Self::ChannelFlowOk { .. } => (20, 21),
            Self::ChannelClose { .. } => (20, 40),
            Self::ChannelCloseOk => (20, 41),
            Self::ExchangeDeclare(_) => (40, 10),
            Self::ExchangeDeclareOk => (40, 11),
            Self::ExchangeDelete { .. } => (40, 20),
            Self::ExchangeDeleteOk => (40, 21),
            Self::ExchangeBind(_) => (40, 30),
            Self::ExchangeBindOk => (40, 31),
            Self::ExchangeUnbind(_) => (40, 40),
            Self::ExchangeUnbindOk => (40, 51),
            Self::QueueDeclare(_) => (50, 10),
            Self::QueueDeclareOk { .. } => (50, 11),
            Self::QueueBind(_) => (50, 20),
            Self::QueueBindOk => (50, 21),
            Self::QueuePurge { .. } => (50, 30),
            Self::QueuePurgeOk { .. } => (50, 31),
            Self::QueueDelete { .. } => (50, 40),
            Self::QueueDeleteOk { .. } => (50, 41),
            Self::QueueUnbind(_) => (50, 50),
            Self::QueueUnbindOk => (50, 51),
            Self::BasicQos { .. } => (60, 10),
            Self::BasicQosOk => (60, 11),
            Self::BasicConsume(_) => (60, 20),
            Self::BasicConsumeOk { .. } => (60, 21),
            Self::BasicCancel { .. } => (60, 30),
            Self::BasicCancelOk { .. } => (60, 31),
            Self::BasicPublish { .. } => (60, 40),
            Self::BasicReturn { .. } => (60, 50),
            Self::BasicDeliver { .. } => (60, 60),
            Self::BasicGet { .. } => (60, 70),
            Self::BasicGetOk { .. } => (60, 71),
            Self::BasicGetEmpty => (60, 72),
            Self::BasicAck { .. } => (60, 80),
            Self::BasicReject { .. } => (60, 90),
            Self::BasicRecoverAsync { .. } => (60, 100),
            Self::BasicRecover { .. } => (60, 110),
            Self::BasicRecoverOk => (60, 111),
            Self::BasicNack { .. } => (60, 120),
            Self::ConfirmSelect { .. } => (85, 10),
            Self::ConfirmSelectOk => (85, 11),
            Self::TxSelect => (90, 10),
            Self::TxSelectOk => (90, 11),
            Self::TxCommit => (90, 20),
            Self::TxCommitOk => (90, 21),
            Self::TxRollback => (90, 30),
            Self::TxRollbackOk => (90, 31),
        }
    }

    /// Appends the method payload (ids and arguments). Methods only clients send encode their
    /// ids with no arguments; the server never sends them.
    pub fn encode(&self, out: &mut BytesMut) {
        let (class_id, method_id) = self.id();
        out.put_u16(class_id);
        out.put_u16(method_id);
        match self {
            Self::ConnectionStart {
                server_properties,
                mechanisms,
                locales,
            } => {
                out.put_u8(0);
                out.put_u8(9);
                server_properties.encode(out);
                put_longstr(out, mechanisms.as_bytes());
                put_longstr(out, locales.as_bytes());
            }
            Self::ConnectionTune {
                channel_max,
                frame_max,
                heartbeat,
            }
            | Self::ConnectionTuneOk {
                channel_max,
                frame_max,
                heartbeat,
            } => {
                out.put_u16(*channel_max);
                out.put_u32(*frame_max);
                out.put_u16(*heartbeat);
            }
            Self::ConnectionOpenOk | Self::BasicGetEmpty => put_shortstr(out, ""),
            Self::ConnectionClose {
                reply_code,
                reply_text,
                class_id,
                method_id,
            }
            | Self::ChannelClose {
                reply_code,
                reply_text,
                class_id,
                method_id,
            } => {
                out.put_u16(*reply_code);
                put_shortstr(out, reply_text);
                out.put_u16(*class_id);
                out.put_u16(*method_id);
            }
            Self::ConnectionBlocked { reason } => put_shortstr(out, reason),
            Self::ChannelOpenOk => put_longstr(out, b""),
            Self::ChannelFlow { active } | Self::ChannelFlowOk { active } => {
                put_bits(out, &[*active])
            }
            Self::QueueDeclareOk {
                queue,
                message_count,
                consumer_count,
            } => {
                put_shortstr(out, queue);
                out.put_u32(*message_count);
                out.put_u32(*consumer_count);
            }
            Self::QueuePurgeOk { message_count } | Self::QueueDeleteOk { message_count } => {
                out.put_u32(*message_count)
            }
            Self::BasicConsumeOk { consumer_tag } | Self::BasicCancelOk { consumer_tag } => {
                put_shortstr(out, consumer_tag)
            }
            Self::BasicCancel {
                consumer_tag,
                nowait,
            } => {
                put_shortstr(out, consumer_tag);
                put_bits(out, &[*nowait]);
            }
            Self::BasicReturn {
                reply_code,
                reply_text,
                exchange,
                routing_key,
            } => {
                out.put_u16(*reply_code);
                put_shortstr(out, reply_text);
                put_shortstr(out, exchange);
                put_shortstr(out, routing_key);
            }
            Self::BasicDeliver {
                consumer_tag,
                delivery_tag,
                redelivered,
                exchange,
                routing_key,
            } => DeliverFields {
                consumer_tag,
                delivery_tag: *delivery_tag,
                redelivered: *redelivered,
                exchange,
                routing_key,
            }
            .encode_arguments(out),
            Self::BasicGetOk {
                delivery_tag,
                redelivered,
                exchange,
                routing_key,
                message_count,
            } => {
                out.put_u64(*delivery_tag);
                put_bits(out, &[*redelivered]);
                put_shortstr(out, exchange);
                put_shortstr(out, routing_key);
                out.put_u32(*message_count);
            }
            Self::BasicAck {
                delivery_tag,
                multiple,
            } => {
                out.put_u64(*delivery_tag);
                put_bits(out, &[*multiple]);
            }
            Self::BasicNack {
                delivery_tag,
                multiple,
                requeue,
            } => {
                out.put_u64(*delivery_tag);
                put_bits(out, &[*multiple, *requeue]);
            }
            _ => {}
        }
    }
}

fn decode_binding(r: &mut Reader<'_>, has_nowait: bool) -> Result<Binding, CodecError> {
    let _ticket = r.u16()?;
    let destination = r.shortstr()?;
    let source = r.shortstr()?;
    let routing_key = r.shortstr()?;
    let nowait = if has_nowait { bit(r.u8()?, 0) } else { false };
    Ok(Binding {
        destination,
        source,
        routing_key,
        nowait,
        arguments: FieldTable::decode(r)?,
    })
}

/// `basic.deliver`'s fields, borrowed: the delivery path encodes them straight from the
/// stored record, the same bytes as [`Method::BasicDeliver`] without its owned strings.
#[derive(Debug, Clone, Copy)]
pub struct DeliverFields<'a> {
    pub consumer_tag: &'a str,
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: &'a str,
    pub routing_key: &'a str,
}

impl DeliverFields<'_> {
    /// The method payload: class and method id, then the arguments.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(60);
        out.put_u16(60);
        self.encode_arguments(out);
    }

    fn encode_arguments(&self, out: &mut BytesMut) {
        put_shortstr(out, self.consumer_tag);
        out.put_u64(self.delivery_tag);
        put_bits(out, &[self.redelivered]);
        put_shortstr(out, self.exchange);
        put_shortstr(out, self.routing_key);
    }
}
