//! Kafka ACLs (`kafka.authorizer`) against the real binary, at the byte level: a super user
//! creates, describes and deletes ACLs; a user held to them is refused produce, fetch, group
//! join, topic creation, deletion and config changes with Kafka's error codes, and Metadata
//! hides the topics it may not describe. Users are added with `tributary user add` and
//! authenticate with SASL PLAIN.

use crate::broker;
use crate::kafka_wire;
pub(super) use crate::kafka_wire::call;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use broker::{TestBroker, connect};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, CreateAclsRequest, CreateAclsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeAclsRequest, DescribeAclsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, GroupId, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, JoinGroupRequest, JoinGroupResponse, MetadataRequest,
    MetadataResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const CONFIG_FILE: &str = "tributary.toml";

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const INVALID_REQUEST: i16 = 42;
const SECURITY_DISABLED: i16 = 54;

// Kafka's codes: resource types, pattern types, operations, permissions.
const ANY: i8 = 1;
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE_CONFIGS: i8 = 10;
const ALTER_CONFIGS: i8 = 11;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

pub(super) fn add_user(root: &Path, name: &str, password: &str) {
    broker::run_cli(
        root,
        &["user", "add", name, "--password-stdin"],
        &format!("{password}\n"),
    );
}

/// SASL and the authorizer on; `admin` is a super user, `alice` is held to ACLs.
fn authorizer_broker() -> TestBroker {
    TestBroker::start_prepared(&["--config", CONFIG_FILE], |root| {
        std::fs::write(
            root.join(CONFIG_FILE),
            "[kafka]\nsasl_enabled = true\nauthorizer = true\nsuper_users = [\"admin\"]\n",
        )
        .expect("config");
        add_user(root, "admin", "admin-secret");
        add_user(root, "alice", "alice-secret");
    })
}

/// A connection authenticated with SASL PLAIN as `user`.
pub(super) fn login(kafka: SocketAddr, user: &str, password: &str) -> TcpStream {
    let mut stream = connect(kafka);
    kafka_wire::sasl_plain_login(&mut stream, user, password);
    stream
}

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

pub(super) fn acl(
    kind: i8,
    pattern: i8,
    resource: &str,
    operation: i8,
    permission: i8,
) -> AclCreation {
    AclCreation::default()
        .with_resource_type(kind)
        .with_resource_name(name(resource))
        .with_resource_pattern_type(pattern)
        .with_principal(name("User:alice"))
        .with_host(name("*"))
        .with_operation(operation)
        .with_permission_type(permission)
}

fn describe_all() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

pub(super) fn create_topics(
    stream: &mut (impl Read + Write),
    names: &[&str],
) -> CreateTopicsResponse {
    let topics = names
        .iter()
        .map(|topic| {
            CreatableTopic::default()
                .with_name(TopicName(name(topic)))
                .with_num_partitions(1)
                .with_replication_factor(1)
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5_000);
    call(stream, ApiKey::CreateTopics, 5, &request)
}

pub(super) fn produce(stream: &mut (impl Read + Write), topic: &str) -> i16 {
    let request = kafka_wire::produce_request(topic, 1, kafka_wire::batch(b"acl"));
    let response: ProduceResponse = call(stream, ApiKey::Produce, 9, &request);
    response.responses[0].partition_responses[0].error_code
}

fn fetch(stream: &mut TcpStream, topic: &str) -> i16 {
    kafka_wire::fetch_error(stream, topic)
}

fn join(stream: &mut TcpStream, group: &str) -> i16 {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(name("consumer"));
    let response: JoinGroupResponse = call(stream, ApiKey::JoinGroup, 5, &request);
    response.error_code
}

fn metadata(stream: &mut TcpStream, topics: Option<&[&str]>) -> MetadataResponse {
    let request = MetadataRequest::default().with_topics(topics.map(|names| {
        names
            .iter()
            .map(|topic| MetadataRequestTopic::default().with_name(Some(TopicName(name(topic)))))
            .collect()
    }));
    call(stream, ApiKey::Metadata, 9, &request)
}

/// `ConfigResource.Type`: a topic, a broker.
const TOPIC_CONFIG: i8 = 2;
const BROKER_CONFIG: i8 = 4;

fn describe_configs(stream: &mut TcpStream, resources: &[(i8, &str)]) -> DescribeConfigsResponse {
    let resources = resources
        .iter()
        .map(|(kind, resource)| {
            DescribeConfigsResource::default()
                .with_resource_type(*kind)
                .with_resource_name(name(resource))
                .with_configuration_keys(Some(vec![name("retention.ms")]))
        })
        .collect();
    let request = DescribeConfigsRequest::default().with_resources(resources);
    call(stream, ApiKey::DescribeConfigs, 1, &request)
}

/// `retention.ms` of `topic` as the caller sees it (None when refused).
fn retention(stream: &mut TcpStream, topic: &str) -> Option<String> {
    let described = describe_configs(stream, &[(TOPIC_CONFIG, topic)]);
    let result = &described.results[0];
    (result.error_code == 0).then(|| {
        let entry = result
            .configs
            .iter()
            .find(|c| c.name.as_str() == "retention.ms");
        let value = entry.and_then(|c| c.value.as_ref()).expect("retention.ms");
        value.to_string()
    })
}

/// The error code each resource of a config response got, by name.
fn codes<'a>(results: impl Iterator<Item = (&'a StrBytes, i16)>) -> Vec<(String, i16)> {
    let mut codes: Vec<_> = results.map(|(n, code)| (n.to_string(), code)).collect();
    codes.sort();
    codes
}

#[test]
fn acl_apis_answer_security_disabled_without_the_authorizer() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let created: CreateAclsResponse = call(
        &mut stream,
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![acl(TOPIC, LITERAL, "t", READ, ALLOW)]),
    );
    assert_eq!(created.results[0].error_code, SECURITY_DISABLED);
    let described: DescribeAclsResponse =
        call(&mut stream, ApiKey::DescribeAcls, 3, &describe_all());
    assert_eq!(described.error_code, SECURITY_DISABLED);
}

#[test]
fn a_super_user_creates_describes_and_deletes_acls() {
    let mut broker = authorizer_broker();
    let kafka = broker.addr("kafka");
    let mut admin = login(kafka, "admin", "admin-secret");
    let creations = vec![
        acl(TOPIC, LITERAL, "orders", READ, ALLOW),
        acl(TOPIC, PREFIXED, "orders", WRITE, ALLOW),
        acl(GROUP, LITERAL, "g1", READ, ALLOW),
        acl(TOPIC, LITERAL, "orders.locked", ALL, DENY),
        acl(CLUSTER, LITERAL, "not-the-cluster", ALL, ALLOW),
    ];
    let created: CreateAclsResponse = call(
        &mut admin,
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(creations),
    );
    let codes: Vec<i16> = created.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [0, 0, 0, 0, INVALID_REQUEST]);

    let all: DescribeAclsResponse = call(&mut admin, ApiKey::DescribeAcls, 3, &describe_all());
    assert_eq!(all.error_code, 0);
    let count: usize = all.resources.iter().map(|r| r.acls.len()).sum();
    assert_eq!(count, 4, "{:?}", all.resources);
    // MATCH selects the bindings that apply to one name: its literal and its prefixes.
    let matching = describe_all()
        .with_resource_type_filter(TOPIC)
        .with_pattern_type_filter(MATCH)
        .with_resource_name_filter(Some(name("orders.eu")));
    let matching: DescribeAclsResponse = call(&mut admin, ApiKey::DescribeAcls, 1, &matching);
    let found: Vec<(String, i8)> = matching
        .resources
        .iter()
        .map(|r| (r.resource_name.to_string(), r.pattern_type))
        .collect();
    assert_eq!(found, [("orders".to_owned(), PREFIXED)]);

    // A user held to ACLs may not manage them.
    let mut alice = login(kafka, "alice", "alice-secret");
    let denied: DescribeAclsResponse = call(&mut alice, ApiKey::DescribeAcls, 3, &describe_all());
    assert_eq!(denied.error_code, CLUSTER_DENIED);
    let denied: CreateAclsResponse = call(
        &mut alice,
        ApiKey::CreateAcls,
        2,
        &CreateAclsRequest::default().with_creations(vec![acl(TOPIC, LITERAL, "*", ALL, ALLOW)]),
    );
    assert_eq!(denied.results[0].error_code, CLUSTER_DENIED);

    let delete_groups = DeleteAclsFilter::default()
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(GROUP)
        .with_pattern_type_filter(ANY)
        .with_principal_filter(Some(name("User:alice")))
        .with_operation(ANY)
        .with_permission_type(ANY);
    let deleted: DeleteAclsResponse = call(
        &mut admin,
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![delete_groups]),
    );
    assert_eq!(deleted.filter_results[0].error_code, 0);
    let gone: Vec<String> = deleted.filter_results[0]
        .matching_acls
        .iter()
        .map(|m| m.resource_name.to_string())
        .collect();
    assert_eq!(gone, ["g1"]);
    let after: DescribeAclsResponse = call(&mut admin, ApiKey::DescribeAcls, 3, &describe_all());
    assert_eq!(
        after.resources.iter().map(|r| r.acls.len()).sum::<usize>(),
        3
    );
    // And the deleted grant no longer applies.
    assert_eq!(join(&mut alice, "g1"), GROUP_DENIED);
}

#[test]
fn denied_requests_get_kafka_error_codes() {
    let mut broker = authorizer_broker();
    let kafka = broker.addr("kafka");
    let mut admin = login(kafka, "admin", "admin-secret");
    let created = create_topics(&mut admin, &["orders.eu", "orders.locked", "payments"]);
    assert!(
        created.topics.iter().all(|t| t.error_code == 0),
        "{created:?}"
    );
    let grants = vec![
        acl(TOPIC, PREFIXED, "orders", READ, ALLOW),
        acl(TOPIC, PREFIXED, "orders", WRITE, ALLOW),
        acl(TOPIC, LITERAL, "orders.locked", WRITE, DENY),
        acl(GROUP, LITERAL, "g-alice", READ, ALLOW),
    ];
    let granted: CreateAclsResponse = call(
        &mut admin,
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(grants),
    );
    assert!(granted.results.iter().all(|r| r.error_code == 0));
    assert_eq!(produce(&mut admin, "payments"), 0, "a super user may");

    let mut alice = login(kafka, "alice", "alice-secret");
    assert_eq!(produce(&mut alice, "orders.eu"), 0);
    assert_eq!(fetch(&mut alice, "orders.eu"), 0);
    assert_eq!(produce(&mut alice, "payments"), TOPIC_DENIED);
    assert_eq!(
        produce(&mut alice, "orders.locked"),
        TOPIC_DENIED,
        "deny wins"
    );
    assert_eq!(
        fetch(&mut alice, "orders.locked"),
        0,
        "only WRITE is denied"
    );
    assert_eq!(fetch(&mut alice, "payments"), TOPIC_DENIED);
    assert_eq!(join(&mut alice, "g-other"), GROUP_DENIED);
    assert_ne!(join(&mut alice, "g-alice"), GROUP_DENIED);

    // No CREATE: neither CreateTopics nor auto-creation on produce.
    let refused = create_topics(&mut alice, &["orders.new"]);
    assert_eq!(refused.topics[0].error_code, TOPIC_DENIED);
    assert_eq!(
        produce(&mut alice, "orders.auto"),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let deleted: DeleteTopicsResponse = call(
        &mut alice,
        ApiKey::DeleteTopics,
        5,
        &DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(name("payments"))])
            .with_timeout_ms(5_000),
    );
    assert_eq!(deleted.responses[0].error_code, TOPIC_DENIED);

    // Metadata lists only what alice may describe; named, the others are refused.
    let listed = metadata(&mut alice, None);
    let mut names: Vec<String> = listed
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    assert_eq!(names, ["orders.eu", "orders.locked"]);
    let named = metadata(&mut alice, Some(&["payments"]));
    assert_eq!(named.topics[0].error_code, TOPIC_DENIED);
    assert!(named.topics[0].partitions.is_empty());
    let all = metadata(&mut admin, None);
    assert!(all.topics.len() >= 3, "a super user sees every topic");
}

#[test]
fn config_requests_are_narrowed_to_the_resources_allowed() {
    use kafka_protocol::messages::alter_configs_request::{
        AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
    };
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let mut broker = authorizer_broker();
    let kafka = broker.addr("kafka");
    let mut admin = login(kafka, "admin", "admin-secret");
    let created = create_topics(&mut admin, &["orders.eu", "payments"]);
    assert!(created.topics.iter().all(|t| t.error_code == 0));
    let grants = vec![
        acl(TOPIC, PREFIXED, "orders", ALTER_CONFIGS, ALLOW),
        acl(TOPIC, LITERAL, "payments", DESCRIBE_CONFIGS, ALLOW),
    ];
    let granted: CreateAclsResponse = call(
        &mut admin,
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(grants),
    );
    assert!(granted.results.iter().all(|r| r.error_code == 0));
    let before = retention(&mut admin, "payments").expect("a super user describes");

    // One request over three resources: each gets its own answer.
    let mut alice = login(kafka, "alice", "alice-secret");
    let described = describe_configs(
        &mut alice,
        &[
            (TOPIC_CONFIG, "orders.eu"),
            (TOPIC_CONFIG, "payments"),
            (BROKER_CONFIG, "1"),
        ],
    );
    assert_eq!(
        codes(
            described
                .results
                .iter()
                .map(|r| (&r.resource_name, r.error_code))
        ),
        [
            ("1".to_owned(), CLUSTER_DENIED),
            ("orders.eu".to_owned(), 0),
            ("payments".to_owned(), 0),
        ],
        "ALTER_CONFIGS implies DESCRIBE_CONFIGS; a broker needs the cluster"
    );
    assert!(
        described
            .results
            .iter()
            .all(|r| r.error_code != 0 || !r.configs.is_empty()),
        "allowed resources are described: {described:?}"
    );

    // Incremental: the allowed topic changes, the other is refused and left as it was.
    let set = |topic: &str| {
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_CONFIG)
            .with_resource_name(name(topic))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(name("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(name("3600000"))),
            ])
    };
    let altered: IncrementalAlterConfigsResponse = call(
        &mut alice,
        ApiKey::IncrementalAlterConfigs,
        0,
        &IncrementalAlterConfigsRequest::default()
            .with_resources(vec![set("orders.eu"), set("payments")]),
    );
    assert_eq!(
        codes(
            altered
                .responses
                .iter()
                .map(|r| (&r.resource_name, r.error_code))
        ),
        [
            ("orders.eu".to_owned(), 0),
            ("payments".to_owned(), TOPIC_DENIED)
        ]
    );
    assert_eq!(
        retention(&mut admin, "orders.eu").as_deref(),
        Some("3600000")
    );
    assert_eq!(retention(&mut admin, "payments"), Some(before.clone()));

    // The legacy AlterConfigs is held to the same ACLs.
    let legacy = |topic: &str| {
        LegacyResource::default()
            .with_resource_type(TOPIC_CONFIG)
            .with_resource_name(name(topic))
            .with_configs(vec![
                LegacyConfig::default()
                    .with_name(name("retention.ms"))
                    .with_value(Some(name("7200000"))),
            ])
    };
    let replaced: AlterConfigsResponse = call(
        &mut alice,
        ApiKey::AlterConfigs,
        1,
        &AlterConfigsRequest::default().with_resources(vec![legacy("payments")]),
    );
    assert_eq!(replaced.responses[0].error_code, TOPIC_DENIED);
    assert_eq!(retention(&mut admin, "payments"), Some(before));
}
