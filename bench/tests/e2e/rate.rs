//! `producerRate: 0` over AMQP: OMB's maximum sustainable rate paces the producers from
//! 10,000 msg/s and the controller moves the target after 3 s; `--unthrottled` has no target;
//! a backlog workload cannot discover a rate. A runner that ignored the target (sending
//! unthrottled), never ran the controller, or mislabelled the mode fails here.

use std::time::Duration;

use tributary_bench::Error;
use tributary_bench::driver::Protocol;
use tributary_bench::payload::Pool;
use tributary_bench::rate::START_RATE;
use tributary_bench::runner::{self, RunOptions};

#[test]
fn max_sustainable_paces_and_moves_the_target_unthrottled_has_none() {
    let mut workload = crate::tiny_workload();
    workload.producer_rate = 0;
    let broker = crate::start_tributary(&workload);
    let uri = broker.address(Protocol::Amqp).to_owned();
    crate::runtime().block_on(async {
        let run = |prefix: &'static str, unthrottled: bool, secs: u64| {
            let workload = workload.clone();
            let uri = uri.clone();
            async move {
                let options = RunOptions {
                    period: crate::PERIOD,
                    test_duration: Some(Duration::from_secs(secs)),
                    warmup: Some(Duration::ZERO),
                    max_in_flight: 200,
                    progress: false,
                    name_prefix: Some(prefix.into()),
                    unthrottled,
                };
                let pool = Pool::new(&workload, &crate::workloads_dir()).expect("payload");
                let driver = Protocol::Amqp.connect(&uri).await.expect("connect");
                runner::run(&workload, pool, driver.as_ref(), "Tributary", &options).await
            }
        };

        let r = run("h20a-max", false, 5).await.expect("run").result;
        assert_eq!(r.producer_rate_mode, "max-sustainable");
        assert_eq!(r.target_publish_rate.len(), r.publish_rate.len());
        assert_eq!(
            r.target_publish_rate[0], START_RATE,
            "the first period runs at the start rate"
        );
        // Paced: the first second sends at most the target (a little over for the timer).
        assert!(
            r.publish_rate[0] <= START_RATE * 1.1,
            "first period {} msg/s above the {START_RATE} target",
            r.publish_rate[0]
        );
        // The controller ran at 3 s (raising or backing off, it never stays exactly put).
        let last = *r.target_publish_rate.last().expect("targets");
        assert_ne!(last, START_RATE, "targets {:?}", r.target_publish_rate);
        assert!(r.messages_consumed > 0);

        let r = run("h20a-unthrottled", true, 2).await.expect("run").result;
        assert_eq!(r.producer_rate_mode, "unthrottled");
        assert!(r.target_publish_rate.is_empty());
        assert!(r.messages_published > 0);
    });

    // OMB refuses to discover a rate while building a backlog, before anything is created.
    let mut backlog = workload.clone();
    backlog.consumer_backlog_size_gb = 0.001;
    crate::runtime().block_on(async {
        let options = RunOptions {
            progress: false,
            ..RunOptions::default()
        };
        let pool = Pool::new(&backlog, &crate::workloads_dir()).expect("payload");
        let driver = Protocol::Amqp.connect(&uri).await.expect("connect");
        let refused = runner::run(&backlog, pool, driver.as_ref(), "Tributary", &options).await;
        assert!(
            matches!(&refused, Err(Error::Workload(m)) if m.contains("--unthrottled")),
            "{refused:?}"
        );
    });
}
