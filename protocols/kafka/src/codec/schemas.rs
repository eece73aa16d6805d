//! The wire layout of every request body this frontend decodes, as data for [`super::bounds`].
//!
//! Each table lists a request's fields in wire order with the versions that carry them, the way
//! `kafka-protocol` 0.18's generated decoders read them (derived from them and checked against
//! them by the tests in `bounds`). Whether strings, bytes and arrays use compact (varint) lengths
//! and whether structs end in tagged fields follows from the request header version, not from
//! the tables. Fields with a tag are read inside the tagged-field section, not in order.
//!
//! Invariant: [`SCHEMAS`] has one entry per entry of [`super::SUPPORTED_APIS`] with the same
//! version range; raising an advertised maximum means revisiting the table here.

use kafka_protocol::messages::ApiKey;

/// What one field is on the wire.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A fixed-width value: integers, booleans, UUIDs.
    Fixed(usize),
    /// A (nullable) string: int16 length, or compact.
    String,
    /// A (nullable) byte string: int32 length, or compact.
    Bytes,
    /// A (nullable) array: int32 count, or compact.
    Array(&'static Kind),
    /// A nested structure (only as array elements or tagged fields).
    Struct(&'static [Field]),
}

/// One field and the versions that carry it.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) min: i16,
    pub(crate) max: i16,
    /// `Some` for a known tagged field, which the decoder reads inside the tagged section.
    pub(crate) tag: Option<u32>,
}

impl Field {
    pub(crate) fn in_version(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// A request body's layout and the versions it covers.
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) api: ApiKey,
    pub(crate) min: i16,
    pub(crate) max: i16,
    pub(crate) fields: &'static [Field],
}

const fn field(name: &'static str, kind: Kind, min: i16, max: i16) -> Field {
    Field {
        name,
        kind,
        min,
        max,
        tag: None,
    }
}

const fn tagged(tag: u32, name: &'static str, kind: Kind, min: i16, max: i16) -> Field {
    Field {
        name,
        kind,
        min,
        max,
        tag: Some(tag),
    }
}

const fn schema(api: ApiKey, min: i16, max: i16, fields: &'static [Field]) -> Schema {
    Schema {
        api,
        min,
        max,
        fields,
    }
}

const I8: Kind = Kind::Fixed(1);
const I16: Kind = Kind::Fixed(2);
const I32: Kind = Kind::Fixed(4);
const I64: Kind = Kind::Fixed(8);
const BOOL: Kind = Kind::Fixed(1);
const UUID: Kind = Kind::Fixed(16);
const STRING: Kind = Kind::String;
const BYTES: Kind = Kind::Bytes;

/// Every decoded request, in [`super::SUPPORTED_APIS`] order.
pub(crate) const SCHEMAS: &[Schema] = &[
    schema(ApiKey::Produce, 3, 13, PRODUCE),
    schema(ApiKey::Fetch, 4, 16, FETCH),
    schema(ApiKey::ListOffsets, 1, 7, LIST_OFFSETS),
    schema(ApiKey::Metadata, 0, 12, METADATA),
    schema(ApiKey::OffsetCommit, 2, 9, OFFSET_COMMIT),
    schema(ApiKey::OffsetFetch, 1, 7, OFFSET_FETCH),
    schema(ApiKey::FindCoordinator, 0, 4, FIND_COORDINATOR),
    schema(ApiKey::JoinGroup, 0, 9, JOIN_GROUP),
    schema(ApiKey::Heartbeat, 0, 4, HEARTBEAT),
    schema(ApiKey::LeaveGroup, 0, 5, LEAVE_GROUP),
    schema(ApiKey::SyncGroup, 0, 5, SYNC_GROUP),
    schema(ApiKey::DescribeGroups, 0, 5, DESCRIBE_GROUPS),
    schema(ApiKey::ListGroups, 0, 5, LIST_GROUPS),
    schema(ApiKey::SaslHandshake, 0, 1, SASL_HANDSHAKE),
    schema(ApiKey::ApiVersions, 0, 4, API_VERSIONS),
    schema(ApiKey::InitProducerId, 0, 4, INIT_PRODUCER_ID),
    schema(ApiKey::CreateTopics, 2, 7, CREATE_TOPICS),
    schema(ApiKey::DeleteTopics, 1, 6, DELETE_TOPICS),
    schema(ApiKey::DeleteRecords, 0, 2, DELETE_RECORDS),
    schema(ApiKey::OffsetForLeaderEpoch, 2, 4, OFFSET_FOR_LEADER_EPOCH),
    schema(ApiKey::DescribeConfigs, 1, 4, DESCRIBE_CONFIGS),
    schema(ApiKey::AlterConfigs, 0, 2, ALTER_CONFIGS),
    schema(ApiKey::SaslAuthenticate, 0, 2, SASL_AUTHENTICATE),
    schema(ApiKey::CreatePartitions, 0, 3, CREATE_PARTITIONS),
    schema(ApiKey::DeleteGroups, 0, 2, DELETE_GROUPS),
    schema(
        ApiKey::IncrementalAlterConfigs,
        0,
        1,
        INCREMENTAL_ALTER_CONFIGS,
    ),
    schema(ApiKey::OffsetDelete, 0, 0, OFFSET_DELETE),
    schema(ApiKey::DescribeCluster, 0, 1, DESCRIBE_CLUSTER),
    schema(ApiKey::DescribeAcls, 1, 3, ACL_FILTER),
    schema(ApiKey::CreateAcls, 1, 3, CREATE_ACLS),
    schema(ApiKey::DeleteAcls, 1, 3, DELETE_ACLS),
    schema(ApiKey::AddPartitionsToTxn, 0, 5, ADD_PARTITIONS_TO_TXN),
    schema(ApiKey::AddOffsetsToTxn, 0, 3, ADD_OFFSETS_TO_TXN),
    schema(ApiKey::EndTxn, 0, 3, END_TXN),
    schema(ApiKey::TxnOffsetCommit, 0, 3, TXN_OFFSET_COMMIT),
    schema(ApiKey::DescribeTransactions, 0, 0, DESCRIBE_TRANSACTIONS),
    schema(ApiKey::ListTransactions, 0, 1, LIST_TRANSACTIONS),
    schema(
        ApiKey::ConsumerGroupHeartbeat,
        0,
        1,
        CONSUMER_GROUP_HEARTBEAT,
    ),
    schema(ApiKey::ConsumerGroupDescribe, 0, 1, CONSUMER_GROUP_DESCRIBE),
];

/// The layout of `api`'s request body.
pub(crate) fn schema_of(api: ApiKey) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|schema| schema.api == api)
}

const PRODUCE_PARTITION_PRODUCE_DATA: &[Field] =
    &[field("index", I32, 3, 13), field("records", BYTES, 3, 13)];
const PRODUCE_TOPIC_PRODUCE_DATA: &[Field] = &[
    field("name", STRING, 3, 12),
    field("topic_id", UUID, 13, 13),
    field(
        "partition_data",
        Kind::Array(&Kind::Struct(PRODUCE_PARTITION_PRODUCE_DATA)),
        3,
        13,
    ),
];
const PRODUCE: &[Field] = &[
    field("transactional_id", STRING, 3, 13),
    field("acks", I16, 3, 13),
    field("timeout_ms", I32, 3, 13),
    field(
        "topic_data",
        Kind::Array(&Kind::Struct(PRODUCE_TOPIC_PRODUCE_DATA)),
        3,
        13,
    ),
];
const FETCH_FORGOTTEN_TOPIC: &[Field] = &[
    field("topic", STRING, 7, 12),
    field("topic_id", UUID, 13, 16),
    field("partitions", Kind::Array(&I32), 7, 16),
];
const FETCH_PARTITION: &[Field] = &[
    field("partition", I32, 4, 16),
    field("current_leader_epoch", I32, 9, 16),
    field("fetch_offset", I64, 4, 16),
    field("last_fetched_epoch", I32, 12, 16),
    field("log_start_offset", I64, 5, 16),
    field("partition_max_bytes", I32, 4, 16),
];
const FETCH_TOPIC: &[Field] = &[
    field("topic", STRING, 4, 12),
    field("topic_id", UUID, 13, 16),
    field(
        "partitions",
        Kind::Array(&Kind::Struct(FETCH_PARTITION)),
        4,
        16,
    ),
];
const FETCH_REPLICA_STATE: &[Field] = &[
    field("replica_id", I32, 15, 16),
    field("replica_epoch", I64, 15, 16),
];
const FETCH: &[Field] = &[
    field("replica_id", I32, 4, 14),
    field("max_wait_ms", I32, 4, 16),
    field("min_bytes", I32, 4, 16),
    field("max_bytes", I32, 4, 16),
    field("isolation_level", I8, 4, 16),
    field("session_id", I32, 7, 16),
    field("session_epoch", I32, 7, 16),
    field("topics", Kind::Array(&Kind::Struct(FETCH_TOPIC)), 4, 16),
    field(
        "forgotten_topics_data",
        Kind::Array(&Kind::Struct(FETCH_FORGOTTEN_TOPIC)),
        7,
        16,
    ),
    field("rack_id", STRING, 11, 16),
    // The crate reads these two from the tagged section without using the declared size.
    tagged(0, "cluster_id", STRING, 12, 16),
    tagged(
        1,
        "replica_state",
        Kind::Struct(FETCH_REPLICA_STATE),
        15,
        16,
    ),
];
const LIST_OFFSETS_PARTITION: &[Field] = &[
    field("partition_index", I32, 1, 7),
    field("current_leader_epoch", I32, 4, 7),
    field("timestamp", I64, 1, 7),
];
const LIST_OFFSETS_TOPIC: &[Field] = &[
    field("name", STRING, 1, 7),
    field(
        "partitions",
        Kind::Array(&Kind::Struct(LIST_OFFSETS_PARTITION)),
        1,
        7,
    ),
];
const LIST_OFFSETS: &[Field] = &[
    field("replica_id", I32, 1, 7),
    field("isolation_level", I8, 2, 7),
    field(
        "topics",
        Kind::Array(&Kind::Struct(LIST_OFFSETS_TOPIC)),
        1,
        7,
    ),
];
const METADATA_TOPIC: &[Field] = &[
    field("topic_id", UUID, 10, 12),
    field("name", STRING, 0, 12),
];
const METADATA: &[Field] = &[
    field("topics", Kind::Array(&Kind::Struct(METADATA_TOPIC)), 0, 12),
    field("allow_auto_topic_creation", BOOL, 4, 12),
    field("include_cluster_authorized_operations", BOOL, 8, 10),
    field("include_topic_authorized_operations", BOOL, 8, 12),
];
const OFFSET_COMMIT_PARTITION: &[Field] = &[
    field("partition_index", I32, 2, 9),
    field("committed_offset", I64, 2, 9),
    field("committed_leader_epoch", I32, 6, 9),
    field("committed_metadata", STRING, 2, 9),
];
const OFFSET_COMMIT_TOPIC: &[Field] = &[
    field("name", STRING, 2, 9),
    field(
        "partitions",
        Kind::Array(&Kind::Struct(OFFSET_COMMIT_PARTITION)),
        2,
        9,
    ),
];
const OFFSET_COMMIT: &[Field] = &[
    field("group_id", STRING, 2, 9),
    field("generation_id_or_member_epoch", I32, 2, 9),
    field("member_id", STRING, 2, 9),
    field("group_instance_id", STRING, 7, 9),
    field("retention_time_ms", I64, 2, 4),
    field(
        "topics",
        Kind::Array(&Kind::Struct(OFFSET_COMMIT_TOPIC)),
        2,
        9,
    ),
];
const OFFSET_FETCH_TOPIC: &[Field] = &[
    field("name", STRING, 1, 7),
    field("partition_indexes", Kind::Array(&I32), 1, 7),
];
const OFFSET_FETCH: &[Field] = &[
    field("group_id", STRING, 1, 7),
    field(
        "topics",
        Kind::Array(&Kind::Struct(OFFSET_FETCH_TOPIC)),
        1,
        7,
    ),
    field("require_stable", BOOL, 7, 7),
];
const FIND_COORDINATOR: &[Field] = &[
    field("key", STRING, 0, 3),
    field("key_type", I8, 1, 4),
    field("coordinator_keys", Kind::Array(&STRING), 4, 4),
];
const JOIN_GROUP_PROTOCOL: &[Field] =
    &[field("name", STRING, 0, 9), field("metadata", BYTES, 0, 9)];
const JOIN_GROUP: &[Field] = &[
    field("group_id", STRING, 0, 9),
    field("session_timeout_ms", I32, 0, 9),
    field("rebalance_timeout_ms", I32, 1, 9),
    field("member_id", STRING, 0, 9),
    field("group_instance_id", STRING, 5, 9),
    field("protocol_type", STRING, 0, 9),
    field(
        "protocols",
        Kind::Array(&Kind::Struct(JOIN_GROUP_PROTOCOL)),
        0,
        9,
    ),
    field("reason", STRING, 8, 9),
];
const HEARTBEAT: &[Field] = &[
    field("group_id", STRING, 0, 4),
    field("generation_id", I32, 0, 4),
    field("member_id", STRING, 0, 4),
    field("group_instance_id", STRING, 3, 4),
];
const LEAVE_GROUP_MEMBER_IDENTITY: &[Field] = &[
    field("member_id", STRING, 3, 5),
    field("group_instance_id", STRING, 3, 5),
    field("reason", STRING, 5, 5),
];
const LEAVE_GROUP: &[Field] = &[
    field("group_id", STRING, 0, 5),
    field("member_id", STRING, 0, 2),
    field(
        "members",
        Kind::Array(&Kind::Struct(LEAVE_GROUP_MEMBER_IDENTITY)),
        3,
        5,
    ),
];
const SYNC_GROUP_ASSIGNMENT: &[Field] = &[
    field("member_id", STRING, 0, 5),
    field("assignment", BYTES, 0, 5),
];
const SYNC_GROUP: &[Field] = &[
    field("group_id", STRING, 0, 5),
    field("generation_id", I32, 0, 5),
    field("member_id", STRING, 0, 5),
    field("group_instance_id", STRING, 3, 5),
    field("protocol_type", STRING, 5, 5),
    field("protocol_name", STRING, 5, 5),
    field(
        "assignments",
        Kind::Array(&Kind::Struct(SYNC_GROUP_ASSIGNMENT)),
        0,
        5,
    ),
];
const DESCRIBE_GROUPS: &[Field] = &[
    field("groups", Kind::Array(&STRING), 0, 5),
    field("include_authorized_operations", BOOL, 3, 5),
];
const LIST_GROUPS: &[Field] = &[
    field("states_filter", Kind::Array(&STRING), 4, 5),
    field("types_filter", Kind::Array(&STRING), 5, 5),
];
const CONSUMER_GROUP_HEARTBEAT_TOPIC: &[Field] = &[
    field("topic_id", UUID, 0, 1),
    field("partitions", Kind::Array(&I32), 0, 1),
];
const CONSUMER_GROUP_HEARTBEAT: &[Field] = &[
    field("group_id", STRING, 0, 1),
    field("member_id", STRING, 0, 1),
    field("member_epoch", I32, 0, 1),
    field("instance_id", STRING, 0, 1),
    field("rack_id", STRING, 0, 1),
    field("rebalance_timeout_ms", I32, 0, 1),
    field("subscribed_topic_names", Kind::Array(&STRING), 0, 1),
    field("subscribed_topic_regex", STRING, 1, 1),
    field("server_assignor", STRING, 0, 1),
    field(
        "topic_partitions",
        Kind::Array(&Kind::Struct(CONSUMER_GROUP_HEARTBEAT_TOPIC)),
        0,
        1,
    ),
];
const CONSUMER_GROUP_DESCRIBE: &[Field] = &[
    field("group_ids", Kind::Array(&STRING), 0, 1),
    field("include_authorized_operations", BOOL, 0, 1),
];
const SASL_HANDSHAKE: &[Field] = &[field("mechanism", STRING, 0, 1)];
const API_VERSIONS: &[Field] = &[
    field("client_software_name", STRING, 3, 4),
    field("client_software_version", STRING, 3, 4),
];
const INIT_PRODUCER_ID: &[Field] = &[
    field("transactional_id", STRING, 0, 4),
    field("transaction_timeout_ms", I32, 0, 4),
    field("producer_id", I64, 3, 4),
    field("producer_epoch", I16, 3, 4),
];
const CREATE_TOPICS_CREATABLE_TOPIC_CONFIG: &[Field] =
    &[field("name", STRING, 2, 7), field("value", STRING, 2, 7)];
const CREATE_TOPICS_CREATABLE_REPLICA_ASSIGNMENT: &[Field] = &[
    field("partition_index", I32, 2, 7),
    field("broker_ids", Kind::Array(&I32), 2, 7),
];
const CREATE_TOPICS_CREATABLE_TOPIC: &[Field] = &[
    field("name", STRING, 2, 7),
    field("num_partitions", I32, 2, 7),
    field("replication_factor", I16, 2, 7),
    field(
        "assignments",
        Kind::Array(&Kind::Struct(CREATE_TOPICS_CREATABLE_REPLICA_ASSIGNMENT)),
        2,
        7,
    ),
    field(
        "configs",
        Kind::Array(&Kind::Struct(CREATE_TOPICS_CREATABLE_TOPIC_CONFIG)),
        2,
        7,
    ),
];
const CREATE_TOPICS: &[Field] = &[
    field(
        "topics",
        Kind::Array(&Kind::Struct(CREATE_TOPICS_CREATABLE_TOPIC)),
        2,
        7,
    ),
    field("timeout_ms", I32, 2, 7),
    field("validate_only", BOOL, 2, 7),
];
const DELETE_TOPICS_DELETE_TOPIC_STATE: &[Field] =
    &[field("name", STRING, 6, 6), field("topic_id", UUID, 6, 6)];
const DELETE_TOPICS: &[Field] = &[
    field(
        "topics",
        Kind::Array(&Kind::Struct(DELETE_TOPICS_DELETE_TOPIC_STATE)),
        6,
        6,
    ),
    field("topic_names", Kind::Array(&STRING), 1, 5),
    field("timeout_ms", I32, 1, 6),
];
const DELETE_RECORDS_PARTITION: &[Field] = &[
    field("partition_index", I32, 0, 2),
    field("offset", I64, 0, 2),
];
const DELETE_RECORDS_TOPIC: &[Field] = &[
    field("name", STRING, 0, 2),
    field(
        "partitions",
        Kind::Array(&Kind::Struct(DELETE_RECORDS_PARTITION)),
        0,
        2,
    ),
];
const DELETE_RECORDS: &[Field] = &[
    field(
        "topics",
        Kind::Array(&Kind::Struct(DELETE_RECORDS_TOPIC)),
        0,
        2,
    ),
    field("timeout_ms", I32, 0, 2),
];
const OFFSET_FOR_LEADER_EPOCH_OFFSET_FOR_LEADER_PARTITION: &[Field] = &[
    field("partition", I32, 2, 4),
    field("current_leader_epoch", I32, 2, 4),
    field("leader_epoch", I32, 2, 4),
];
const OFFSET_FOR_LEADER_EPOCH_OFFSET_FOR_LEADER_TOPIC: &[Field] = &[
    field("topic", STRING, 2, 4),
    field(
        "partitions",
        Kind::Array(&Kind::Struct(
            OFFSET_FOR_LEADER_EPOCH_OFFSET_FOR_LEADER_PARTITION,
        )),
        2,
        4,
    ),
];
const OFFSET_FOR_LEADER_EPOCH: &[Field] = &[
    field("replica_id", I32, 3, 4),
    field(
        "topics",
        Kind::Array(&Kind::Struct(
            OFFSET_FOR_LEADER_EPOCH_OFFSET_FOR_LEADER_TOPIC,
        )),
        2,
        4,
    ),
];
const DESCRIBE_CONFIGS_RESOURCE: &[Field] = &[
    field("resource_type", I8, 1, 4),
    field("resource_name", STRING, 1, 4),
    field("configuration_keys", Kind::Array(&STRING), 1, 4),
];
const DESCRIBE_CONFIGS: &[Field] = &[
    field(
        "resources",
        Kind::Array(&Kind::Struct(DESCRIBE_CONFIGS_RESOURCE)),
        1,
        4,
    ),
    field("include_synonyms", BOOL, 1, 4),
    field("include_documentation", BOOL, 3, 4),
];
const ALTER_CONFIGS_ALTERABLE_CONFIG: &[Field] =
    &[field("name", STRING, 0, 2), field("value", STRING, 0, 2)];
const ALTER_CONFIGS_RESOURCE: &[Field] = &[
    field("resource_type", I8, 0, 2),
    field("resource_name", STRING, 0, 2),
    field(
        "configs",
        Kind::Array(&Kind::Struct(ALTER_CONFIGS_ALTERABLE_CONFIG)),
        0,
        2,
    ),
];
const ALTER_CONFIGS: &[Field] = &[
    field(
        "resources",
        Kind::Array(&Kind::Struct(ALTER_CONFIGS_RESOURCE)),
        0,
        2,
    ),
    field("validate_only", BOOL, 0, 2),
];
const SASL_AUTHENTICATE: &[Field] = &[field("auth_bytes", BYTES, 0, 2)];
const CREATE_PARTITIONS_ASSIGNMENT: &[Field] = &[field("broker_ids", Kind::Array(&I32), 0, 3)];
const CREATE_PARTITIONS_TOPIC: &[Field] = &[
    field("name", STRING, 0, 3),
    field("count", I32, 0, 3),
    field(
        "assignments",
        Kind::Array(&Kind::Struct(CREATE_PARTITIONS_ASSIGNMENT)),
        0,
        3,
    ),
];
const CREATE_PARTITIONS: &[Field] = &[
    field(
        "topics",
        Kind::Array(&Kind::Struct(CREATE_PARTITIONS_TOPIC)),
        0,
        3,
    ),
    field("timeout_ms", I32, 0, 3),
    field("validate_only", BOOL, 0, 3),
];
const DELETE_GROUPS: &[Field] = &[field("groups_names", Kind::Array(&STRING), 0, 2)];
const INCREMENTAL_ALTER_CONFIGS_ALTERABLE_CONFIG: &[Field] = &[
    field("name", STRING, 0, 1),
    field("config_operation", I8, 0, 1),
    field("value", STRING, 0, 1),
];
const INCREMENTAL_ALTER_CONFIGS_ALTER_CONFIGS_RESOURCE: &[Field] = &[
    field("resource_type", I8, 0, 1),
    field("resource_name", STRING, 0, 1),
    field(
        "configs",
        Kind::Array(&Kind::Struct(INCREMENTAL_ALTER_CONFIGS_ALTERABLE_CONFIG)),
        0,
        1,
    ),
];
const INCREMENTAL_ALTER_CONFIGS: &[Field] = &[
    field(
        "resources",
        Kind::Array(&Kind::Struct(
            INCREMENTAL_ALTER_CONFIGS_ALTER_CONFIGS_RESOURCE,
        )),
        0,
        1,
    ),
    field("validate_only", BOOL, 0, 1),
];
const OFFSET_DELETE_PARTITION: &[Field] = &[field("partition_index", I32, 0, 0)];
const OFFSET_DELETE_TOPIC: &[Field] = &[
    field("name", STRING, 0, 0),
    field(
        "partitions",
        Kind::Array(&Kind::Struct(OFFSET_DELETE_PARTITION)),
        0,
        0,
    ),
];
const OFFSET_DELETE: &[Field] = &[
    field("group_id", STRING, 0, 0),
    field(
        "topics",
        Kind::Array(&Kind::Struct(OFFSET_DELETE_TOPIC)),
        0,
        0,
    ),
];
const DESCRIBE_CLUSTER: &[Field] = &[
    field("include_cluster_authorized_operations", BOOL, 0, 1),
    field("endpoint_type", I8, 1, 1),
];

/// A DescribeAcls request, and one DeleteAcls filter.
const ACL_FILTER: &[Field] = &[
    field("resource_type_filter", I8, 1, 3),
    field("resource_name_filter", STRING, 1, 3),
    field("pattern_type_filter", I8, 1, 3),
    field("principal_filter", STRING, 1, 3),
    field("host_filter", STRING, 1, 3),
    field("operation", I8, 1, 3),
    field("permission_type", I8, 1, 3),
];
const ACL_CREATION: &[Field] = &[
    field("resource_type", I8, 1, 3),
    field("resource_name", STRING, 1, 3),
    field("resource_pattern_type", I8, 1, 3),
    field("principal", STRING, 1, 3),
    field("host", STRING, 1, 3),
    field("operation", I8, 1, 3),
    field("permission_type", I8, 1, 3),
];
const CREATE_ACLS: &[Field] = &[field(
    "creations",
    Kind::Array(&Kind::Struct(ACL_CREATION)),
    1,
    3,
)];
const DELETE_ACLS: &[Field] = &[field(
    "filters",
    Kind::Array(&Kind::Struct(ACL_FILTER)),
    1,
    3,
)];
const ADD_PARTITIONS_TO_TXN_TOPIC: &[Field] = &[
    field("name", STRING, 0, 5),
    field("partitions", Kind::Array(&I32), 0, 5),
];
const ADD_PARTITIONS_TO_TXN_TRANSACTION: &[Field] = &[
    field("transactional_id", STRING, 4, 5),
    field("producer_id", I64, 4, 5),
    field("producer_epoch", I16, 4, 5),
    field("verify_only", BOOL, 4, 5),
    field(
        "topics",
        Kind::Array(&Kind::Struct(ADD_PARTITIONS_TO_TXN_TOPIC)),
        4,
        5,
    ),
];
const ADD_PARTITIONS_TO_TXN: &[Field] = &[
    field(
        "transactions",
        Kind::Array(&Kind::Struct(ADD_PARTITIONS_TO_TXN_TRANSACTION)),
        4,
        5,
    ),
    field("transactional_id", STRING, 0, 3),
    field("producer_id", I64, 0, 3),
    field("producer_epoch", I16, 0, 3),
    field(
        "topics",
        Kind::Array(&Kind::Struct(ADD_PARTITIONS_TO_TXN_TOPIC)),
        0,
        3,
    ),
];
const ADD_OFFSETS_TO_TXN: &[Field] = &[
    field("transactional_id", STRING, 0, 3),
    field("producer_id", I64, 0, 3),
    field("producer_epoch", I16, 0, 3),
    field("group_id", STRING, 0, 3),
];
const END_TXN: &[Field] = &[
    field("transactional_id", STRING, 0, 3),
    field("producer_id", I64, 0, 3),
    field("producer_epoch", I16, 0, 3),
    field("committed", BOOL, 0, 3),
];
const TXN_OFFSET_COMMIT_PARTITION: &[Field] = &[
    field("partition_index", I32, 0, 3),
    field("committed_offset", I64, 0, 3),
    field("committed_leader_epoch", I32, 2, 3),
    field("committed_metadata", STRING, 0, 3),
];
const TXN_OFFSET_COMMIT_TOPIC: &[Field] = &[
    field("name", STRING, 0, 3),
    field(
        "partitions",
        Kind::Array(&Kind::Struct(TXN_OFFSET_COMMIT_PARTITION)),
        0,
        3,
    ),
];
const TXN_OFFSET_COMMIT: &[Field] = &[
    field("transactional_id", STRING, 0, 3),
    field("group_id", STRING, 0, 3),
    field("producer_id", I64, 0, 3),
    field("producer_epoch", I16, 0, 3),
    field("generation_id", I32, 3, 3),
    field("member_id", STRING, 3, 3),
    field("group_instance_id", STRING, 3, 3),
    field(
        "topics",
        Kind::Array(&Kind::Struct(TXN_OFFSET_COMMIT_TOPIC)),
        0,
        3,
    ),
];
const DESCRIBE_TRANSACTIONS: &[Field] = &[field("transactional_ids", Kind::Array(&STRING), 0, 0)];
const LIST_TRANSACTIONS: &[Field] = &[
    field("state_filters", Kind::Array(&STRING), 0, 1),
    field("producer_id_filters", Kind::Array(&I64), 0, 1),
    field("duration_filter", I64, 1, 1),
];
