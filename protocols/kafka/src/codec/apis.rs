//! The one table of Kafka APIs this frontend implements, with the version range of each.
//!
//! The table generates the typed request and response enums, the body decoder and the response
//! encoder, and it is exactly what ApiVersions advertises, so a client can never negotiate a
//! version the dispatcher does not handle. Minimums are the KIP-896 baseline (Kafka 4.x); maxima
//! stop where a newer version would need a feature this broker lacks (KIP-890, KIP-1043
//! group types in DescribeGroups v6). Produce 13 and Fetch 13+ address topics by the engine's stable
//! topic ids.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

/// One advertised API and its inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

impl SupportedApi {
    pub fn supports(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// `encode_body` for an enum whose every variant wraps an encodable message body.
macro_rules! encode_body_fn {
    ($($variant:ident),*) => {
        pub(crate) fn encode_body(
            &self,
            buf: &mut BytesMut,
            version: i16,
        ) -> anyhow_free::Result<()> {
            match self {
                $(Self::$variant(body) => body.encode(buf, version).map_err(anyhow_free::boxed),)*
            }
        }
    };
}

macro_rules! supported_apis {
    ($($variant:ident: $request:ident => $response:ident, $min:literal..=$max:literal;)*) => {
        /// Every API this frontend serves, in ApiVersions order.
        pub const SUPPORTED_APIS: &[SupportedApi] = &[
            $(SupportedApi { key: ApiKey::$variant, min: $min, max: $max },)*
        ];

        /// A decoded request body of a supported API.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum KafkaRequest {
            $($variant($request),)*
        }

        /// A response body of a supported API, encoded at the request's version.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum KafkaResponse {
            $($variant($response),)*
        }

        /// Decodes the body of a request whose key and version were checked against the table.
        pub(crate) fn decode_body(
            key: ApiKey,
            version: i16,
            body: &mut Bytes,
        ) -> Option<anyhow_free::Result<KafkaRequest>> {
            match key {
                $(ApiKey::$variant => Some(
                    $request::decode(body, version)
                        .map(KafkaRequest::$variant)
                        .map_err(anyhow_free::boxed),
                ),)*
                _ => None,
            }
        }

        // Tests encode requests as a client would (the crate's client side is a dev feature).
        #[cfg(test)]
        impl KafkaRequest {
            encode_body_fn!($($variant),*);
        }

        impl KafkaResponse {
            /// The API this response answers.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Self::$variant(_) => ApiKey::$variant,)*
                }
            }

            encode_body_fn!($($variant),*);
        }
    };
}

supported_apis! {
    Produce: ProduceRequest => ProduceResponse, 3..=13;
    // 17+ add replica-only fields (KIP-853 directory ids, KIP-1166 high watermarks).
    Fetch: FetchRequest => FetchResponse, 4..=16;
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse, 1..=7;
    Metadata: MetadataRequest => MetadataResponse, 0..=12;
    // v9 is v8 for KIP-848 members (the member epoch in place of the generation).
    OffsetCommit: OffsetCommitRequest => OffsetCommitResponse, 2..=9;
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse, 1..=7;
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse, 0..=4;
    JoinGroup: JoinGroupRequest => JoinGroupResponse, 0..=9;
    Heartbeat: HeartbeatRequest => HeartbeatResponse, 0..=4;
    LeaveGroup: LeaveGroupRequest => LeaveGroupResponse, 0..=5;
    SyncGroup: SyncGroupRequest => SyncGroupResponse, 0..=5;
    DescribeGroups: DescribeGroupsRequest => DescribeGroupsResponse, 0..=5;
    // v5 (KIP-848): the types filter and each group's type.
    ListGroups: ListGroupsRequest => ListGroupsResponse, 0..=5;
    // After v0 the exchange continues as raw SASL tokens (see handlers::sasl).
    SaslHandshake: SaslHandshakeRequest => SaslHandshakeResponse, 0..=1;
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse, 0..=4;
    // v5+ concern KIP-890 and KIP-939 transactions, which are not served.
    InitProducerId: InitProducerIdRequest => InitProducerIdResponse, 0..=4;
    CreateTopics: CreateTopicsRequest => CreateTopicsResponse, 2..=7;
    DeleteTopics: DeleteTopicsRequest => DeleteTopicsResponse, 1..=6;
    DeleteRecords: DeleteRecordsRequest => DeleteRecordsResponse, 0..=2;
    OffsetForLeaderEpoch: OffsetForLeaderEpochRequest => OffsetForLeaderEpochResponse, 2..=4;
    DescribeConfigs: DescribeConfigsRequest => DescribeConfigsResponse, 1..=4;
    AlterConfigs: AlterConfigsRequest => AlterConfigsResponse, 0..=2;
    SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticateResponse, 0..=2;
    CreatePartitions: CreatePartitionsRequest => CreatePartitionsResponse, 0..=3;
    DeleteGroups: DeleteGroupsRequest => DeleteGroupsResponse, 0..=2;
    IncrementalAlterConfigs: IncrementalAlterConfigsRequest => IncrementalAlterConfigsResponse, 0..=1;
    OffsetDelete: OffsetDeleteRequest => OffsetDeleteResponse, 0..=0;
    DescribeCluster: DescribeClusterRequest => DescribeClusterResponse, 0..=1;
    // Answered SECURITY_DISABLED without `kafka.authorizer`, as Kafka does.
    DescribeAcls: DescribeAclsRequest => DescribeAclsResponse, 1..=3;
    CreateAcls: CreateAclsRequest => CreateAclsResponse, 1..=3;
    DeleteAcls: DeleteAclsRequest => DeleteAclsResponse, 1..=3;
    // Transactions (KIP-98). AddPartitionsToTxn v4-5 is the batched form of KIP-890 part 1
    // (VerifyOnly; CLUSTER_ACTION under the authorizer). The other transaction APIs stop below
    // KIP-890 part 2 (transaction version 2: EndTxn v5's epoch bump, TxnOffsetCommit v5).
    AddPartitionsToTxn: AddPartitionsToTxnRequest => AddPartitionsToTxnResponse, 0..=5;
    AddOffsetsToTxn: AddOffsetsToTxnRequest => AddOffsetsToTxnResponse, 0..=3;
    EndTxn: EndTxnRequest => EndTxnResponse, 0..=3;
    TxnOffsetCommit: TxnOffsetCommitRequest => TxnOffsetCommitResponse, 0..=3;
    DescribeTransactions: DescribeTransactionsRequest => DescribeTransactionsResponse, 0..=0;
    // v2 adds a transactional id regular expression (KIP-1152), not implemented.
    ListTransactions: ListTransactionsRequest => ListTransactionsResponse, 0..=1;
    // KIP-848 consumer groups (server-side assignment; v1: client-chosen member ids, regex).
    ConsumerGroupHeartbeat: ConsumerGroupHeartbeatRequest => ConsumerGroupHeartbeatResponse, 0..=1;
    ConsumerGroupDescribe: ConsumerGroupDescribeRequest => ConsumerGroupDescribeResponse, 0..=1;
}

/// The entry of `key` in [`SUPPORTED_APIS`].
pub fn supported(key: ApiKey) -> Option<&'static SupportedApi> {
    SUPPORTED_APIS.iter().find(|api| api.key == key)
}

/// The `kafka-protocol` crate reports failures as `anyhow::Error`; they are boxed here so no
/// `anyhow` type leaks into this crate's error enum.
pub(crate) mod anyhow_free {
    pub(crate) type Boxed = Box<dyn std::error::Error + Send + Sync>;
    pub(crate) type Result<T> = std::result::Result<T, Boxed>;

    pub(crate) fn boxed<E: Into<Boxed>>(error: E) -> Boxed {
        error.into()
    }
}
