//! Every metric in the catalog, exported with representative labels, passes the in-process
//! exposition check (what `promtool check metrics` reports; `.ci/run` also runs promtool on a
//! real scrape) with no findings: names, HELP text, units, counter suffixes and histogram
//! buckets are valid for Prometheus before any dashboard relies on them.

use tributary::telemetry::{self, MetricKind, exposition};

#[test]
fn every_catalog_metric_passes_the_exposition_check() {
    let recorder = telemetry::prometheus_builder()
        .expect("valid buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        telemetry::describe_all();
        for metric in telemetry::all_metrics() {
            let labels = [
                ("protocol", "kafka"),
                ("topic", "orders"),
                ("partition", "0"),
            ];
            match metric.kind {
                MetricKind::Counter => metrics::counter!(metric.name, &labels).increment(3),
                MetricKind::Gauge => metrics::gauge!(metric.name, &labels).set(2.0),
                MetricKind::Histogram => {
                    for seconds in [0.000_07, 0.004, 0.2, 45.0] {
                        metrics::histogram!(metric.name, &labels).record(seconds);
                    }
                }
            }
        }
    });
    let exposition = handle.render();
    for metric in telemetry::all_metrics() {
        assert!(
            exposition.contains(&format!("# HELP {} ", metric.name)),
            "{} has no HELP line in:\n{exposition}",
            metric.name
        );
        if metric.kind == MetricKind::Histogram {
            assert!(
                exposition.contains(&format!("{}_bucket{{", metric.name)),
                "{}",
                metric.name
            );
        }
    }
    let findings = exposition::check(&exposition);
    assert!(
        findings.is_empty(),
        "exposition findings:\n{findings:#?}\non:\n{exposition}"
    );
}
