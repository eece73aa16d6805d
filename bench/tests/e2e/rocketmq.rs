//! RocketMQ: the sum of the topic's queue offsets (messages stored) against the reported
//! publish rates.

use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig, DefaultMQProducer};
use rocketmq_protocol::protocol::SerializeType;
use rocketmq_protocol::protocol::remoting_command_defaults::{
    RemotingCommandDefaults, RemotingCommandFactory,
};
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use tributary_bench::driver::Protocol;

#[test]
fn tiny_workload_over_rocketmq_matches_the_queue_offsets() {
    let workload = crate::tiny_workload();
    let broker = crate::start_tributary(&workload);
    let namesrv = broker.address(Protocol::RocketMq).to_owned();
    crate::runtime().block_on(async {
        let output = crate::run(&workload, Protocol::RocketMq, &namesrv, "h19-rocketmq").await;
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: "h19-count".into(),
            ..Default::default()
        })
        .expect("plan")
        .build()
        .expect("runtime");
        let factory = RemotingCommandFactory::new(RemotingCommandDefaults::new(
            rocketmq_model::version::CURRENT_VERSION as i32,
            SerializeType::JSON,
        ));
        let runtime = ClientRuntime::try_new_with_remoting_command_factory(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            rocketmq_observability::TelemetryHandle::noop(),
            factory,
        )
        .expect("client runtime");
        let mut producer = DefaultMQProducer::builder(runtime.clone())
            .producer_group("h19-count".to_string())
            .name_server_addr(namesrv.clone())
            .build();
        producer.start().await.expect("producer");
        let queues = producer
            .fetch_publish_message_queues(&output.topics[0])
            .await
            .expect("queues");
        assert_eq!(queues.len() as u32, workload.partitions_per_topic);
        let mut stored = 0i64;
        for queue in &queues {
            stored += producer.max_offset(queue).await.expect("max offset");
        }
        producer.shutdown().await;
        let _ = runtime.shutdown().await;
        let _ = owner.shutdown_tasks().await;
        let _ = owner.shutdown_background();
        crate::check(&output, stored as u64);
    });
    drop(broker);
}
