//! The comparison report: one self-contained HTML file (inline SVG and CSS, no script, no
//! external resource) with a summary table, ratios against a baseline (the first run, or the
//! run of a chosen target over the same protocol), and charts of
//! publish and consume rates over time, publish and end-to-end latency percentiles over time,
//! and the aggregated latency distributions (one series per run).

use std::fmt::Write;

use crate::result::TestResult;
use crate::svg::{Series, XAxis, escape, line_chart};

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn over_time(results: &[TestResult], pick: impl Fn(&TestResult) -> &[f64]) -> Vec<Series> {
    results
        .iter()
        .map(|r| Series {
            name: r.driver.clone(),
            points: pick(r)
                .iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64 * r.period_seconds, *v))
                .collect(),
        })
        .collect()
}

fn distribution(results: &[TestResult], end_to_end: bool) -> Vec<Series> {
    results
        .iter()
        .map(|r| Series {
            name: r.driver.clone(),
            points: TestResult::sorted_quantiles(if end_to_end {
                &r.aggregated_end_to_end_latency_quantiles
            } else {
                &r.aggregated_publish_latency_quantiles
            }),
        })
        .collect()
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 && value.is_finite() {
        format!("{:.2}×", value / base)
    } else {
        "–".into()
    }
}

/// What the ratios of the summary table divide by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Baseline {
    /// The first run, whatever its protocol.
    #[default]
    FirstRun,
    /// The run of this target (e.g. `Tributary`) over the row's own protocol; rows whose
    /// protocol that target did not run show no ratio.
    Target(String),
}

impl Baseline {
    fn of<'a>(&self, results: &'a [TestResult], row: &TestResult) -> Option<&'a TestResult> {
        match self {
            Baseline::FirstRun => results.first(),
            Baseline::Target(target) => results
                .iter()
                .find(|b| b.target.eq_ignore_ascii_case(target) && b.protocol == row.protocol),
        }
    }

    fn describe(&self) -> String {
        match self {
            Baseline::FirstRun => "Ratios are against the first row.".into(),
            Baseline::Target(target) => format!(
                "Ratios are against {} over the same protocol.",
                escape(target)
            ),
        }
    }
}

/// The report for `results`, with ratios against `baseline`.
pub fn html(title: &str, results: &[TestResult], baseline: &Baseline) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:12px 0}}\
         td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}th{{background:#f0f0f0}}\
         td:first-child,th:first-child{{text-align:left}}figure{{margin:16px 0}}</style></head><body>\n",
        escape(title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(title));
    if let Some(first) = results.first() {
        let _ = writeln!(
            out,
            "<p>Workload <b>{}</b>: {} topic(s) × {} partition(s), {} B messages, {} producer(s) and {} consumer(s) per topic; {} s periods. {} Publish rates count only the sends the broker acknowledged; refused or failed sends are the errors column.</p>",
            escape(&first.workload),
            first.topics,
            first.partitions,
            first.message_size,
            first.producers_per_topic,
            first.consumers_per_topic,
            first.period_seconds,
            baseline.describe()
        );
    }
    out.push_str(
        "<table><tr><th>run</th><th>publish msg/s</th><th>consume msg/s</th><th>publish p50 ms</th>\
         <th>publish p99 ms</th><th>publish max ms</th><th>e2e p50 ms</th><th>e2e p99 ms</th>\
         <th>e2e max ms</th><th>publish errors/s</th><th>publish ratio</th><th>e2e p99 ratio</th></tr>\n",
    );
    for r in results {
        let base = baseline.of(results, r);
        let (publish, consume) = (mean(&r.publish_rate), mean(&r.consume_rate));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{publish:.0}</td><td>{consume:.0}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.driver),
            r.aggregated_publish_latency_50pct,
            r.aggregated_publish_latency_99pct,
            r.aggregated_publish_latency_max,
            r.aggregated_end_to_end_latency_50pct,
            r.aggregated_end_to_end_latency_99pct,
            r.aggregated_end_to_end_latency_max,
            mean(&r.publish_error_rate),
            ratio(publish, base.map_or(0.0, |b| mean(&b.publish_rate))),
            ratio(
                r.aggregated_end_to_end_latency_99pct,
                base.map_or(0.0, |b| b.aggregated_end_to_end_latency_99pct)
            ),
        );
    }
    out.push_str("</table>\n");
    let charts = [
        line_chart(
            "Publish rate",
            "seconds",
            "msg/s",
            XAxis::Linear,
            &over_time(results, |r| &r.publish_rate),
        ),
        line_chart(
            "Consume rate",
            "seconds",
            "msg/s",
            XAxis::Linear,
            &over_time(results, |r| &r.consume_rate),
        ),
        line_chart(
            "Publish latency p99 per period",
            "seconds",
            "ms",
            XAxis::Linear,
            &over_time(results, |r| &r.publish_latency_99pct),
        ),
        line_chart(
            "End-to-end latency p99 per period",
            "seconds",
            "ms",
            XAxis::Linear,
            &over_time(results, |r| &r.end_to_end_latency_99pct),
        ),
        line_chart(
            "Publish latency distribution",
            "percentile",
            "ms",
            XAxis::Percentile,
            &distribution(results, false),
        ),
        line_chart(
            "End-to-end latency distribution",
            "percentile",
            "ms",
            XAxis::Percentile,
            &distribution(results, true),
        ),
    ];
    for chart in charts {
        let _ = writeln!(out, "<figure>{chart}</figure>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_a_row_per_run_ratios_and_six_charts() {
        let run = |driver: &str, rate: f64| TestResult {
            driver: driver.into(),
            workload: "w<1>".into(),
            period_seconds: 1.0,
            publish_rate: vec![rate, rate],
            consume_rate: vec![rate],
            aggregated_end_to_end_latency_99pct: rate / 100.0,
            ..Default::default()
        };
        let page = html(
            "cmp",
            &[
                run("Tributary (kafka)", 100.0),
                run("RabbitMQ (amqp)", 50.0),
            ],
            &Baseline::FirstRun,
        );
        assert_eq!(page.matches("<svg").count(), 6);
        assert!(
            page.contains("<td>Tributary (kafka)</td>")
                && page.contains("<td>RabbitMQ (amqp)</td>")
        );
        assert!(
            page.contains("<td>0.50×</td>"),
            "ratio against the first run"
        );
        assert!(page.contains("w&lt;1&gt;"));
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));
    }

    #[test]
    fn a_target_baseline_divides_by_its_run_over_the_same_protocol() {
        let run = |target: &str, protocol: &str, rate: f64| TestResult {
            driver: format!("{target} ({protocol})"),
            target: target.into(),
            protocol: protocol.into(),
            period_seconds: 1.0,
            publish_rate: vec![rate],
            aggregated_end_to_end_latency_99pct: 2.0,
            ..Default::default()
        };
        let results = [
            run("Tributary", "kafka", 900.0),
            run("Tributary", "amqp", 100.0),
            run("RabbitMQ", "amqp", 25.0),
            run("RocketMQ", "rocketmq", 10.0),
        ];
        let page = html("cmp", &results, &Baseline::Target("tributary".into()));
        let row = |driver: &str| {
            let start = page.find(&format!("<tr><td>{driver}</td>")).expect(driver);
            page[start..].split_once("</tr>").unwrap().0.to_owned()
        };
        assert!(row("Tributary (kafka)").ends_with("<td>1.00×</td><td>1.00×</td>"));
        // 25 / 100 (Tributary over AMQP), not 25 / 900 (the first row).
        assert!(row("RabbitMQ (amqp)").ends_with("<td>0.25×</td><td>1.00×</td>"));
        // Tributary ran no RocketMQ here: no base, no ratio.
        assert!(row("RocketMQ (rocketmq)").ends_with("<td>–</td><td>–</td>"));
        assert!(page.contains("against tributary over the same protocol"));
    }
}
