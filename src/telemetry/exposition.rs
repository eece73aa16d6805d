//! The Prometheus text format (0.0.4): a writer for families computed at scrape time, and a
//! checker that finds what `promtool check metrics` would, so `cargo test` can hold `/metrics`
//! to the format on a machine without promtool.
//!
//! Invariants: [`write_family`] writes `# HELP` and `# TYPE` before the samples, escapes HELP
//! text and label values, and writes nothing for a family without samples (as the recorder
//! does). [`check`] returns one finding per problem, each starting with the family name.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::{MetricDescription, MetricKind};

/// One sample of a family: its labels (bounded, broker-side names only) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Sample {
    pub fn new(labels: Vec<(&'static str, String)>, value: f64) -> Self {
        Self { labels, value }
    }

    /// A sample without labels.
    pub fn plain(value: f64) -> Self {
        Self::new(Vec::new(), value)
    }
}

/// Appends `metric`'s family with `samples` to `out` (nothing when `samples` is empty).
pub fn write_family(out: &mut String, metric: &MetricDescription, samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    if !out.is_empty() && !out.ends_with("\n\n") {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    let kind = match metric.kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    };
    let help = metric.help.replace('\\', r"\\").replace('\n', r"\n");
    let _ = writeln!(out, "# HELP {} {help}", metric.name);
    let _ = writeln!(out, "# TYPE {} {kind}", metric.name);
    for sample in samples {
        out.push_str(metric.name);
        if !sample.labels.is_empty() {
            out.push('{');
            for (at, (name, value)) in sample.labels.iter().enumerate() {
                if at > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", format_value(sample.value));
    }
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

/// Problems `promtool check metrics` reports (format errors and its lint), found in-process.
/// Empty means clean.
pub fn check(text: &str) -> Vec<String> {
    let mut checker = Checker::default();
    for (number, line) in text.lines().enumerate() {
        checker.line(number + 1, line);
    }
    checker.finish()
}

/// A series' labels other than `le`.
type SeriesLabels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Family {
    kind: Option<String>,
    help: bool,
    samples: usize,
    /// Histogram buckets by the series' other labels: (le, cumulative count).
    buckets: HashMap<SeriesLabels, Vec<(f64, f64)>>,
    counts: HashMap<SeriesLabels, f64>,
}

#[derive(Debug, Default)]
struct Checker {
    families: HashMap<String, Family>,
    /// Families in order of first appearance, to find a family split in two.
    order: Vec<String>,
    series: HashSet<String>,
    findings: Vec<String>,
}

impl Checker {
    fn finding(&mut self, family: &str, what: impl std::fmt::Display) {
        self.findings.push(format!("{family} {what}"));
    }

    fn enter(&mut self, family: &str, line: usize) {
        if self.order.last().map(String::as_str) == Some(family) {
            return;
        }
        if self.order.iter().any(|seen| seen == family) {
            self.finding(family, format!("line {line}: family appears in two places"));
        }
        self.order.push(family.to_owned());
    }

    fn line(&mut self, number: usize, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            self.metadata(number, name, |family| {
                let again = family.help;
                family.help = true;
                again.then_some("second HELP line")
            });
            if help.contains('\\') && !valid_help_escapes(help) {
                self.finding(name, format!("line {number}: bad escape in HELP"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                self.finding(name, format!("line {number}: unknown type {kind:?}"));
            }
            let kind = kind.to_owned();
            self.metadata(number, name, |family| {
                if family.samples > 0 {
                    Some("TYPE after samples")
                } else if family.kind.replace(kind).is_some() {
                    Some("second TYPE line")
                } else {
                    None
                }
            });
        } else if line.starts_with('#') {
            // Other comments are allowed anywhere.
        } else {
            self.sample(number, line);
        }
    }

    fn metadata(
        &mut self,
        number: usize,
        name: &str,
        update: impl FnOnce(&mut Family) -> Option<&'static str>,
    ) {
        if !valid_metric_name(name) {
            self.finding(name, format!("line {number}: invalid metric name"));
        }
        self.enter(name, number);
        let problem = update(self.families.entry(name.to_owned()).or_default());
        if let Some(problem) = problem {
            self.finding(name, format!("line {number}: {problem}"));
        }
    }

    fn sample(&mut self, number: usize, line: &str) {
        let parsed = match parse_sample(line) {
            Ok(parsed) => parsed,
            Err(problem) => {
                let name = line.split(['{', ' ']).next().unwrap_or(line).to_owned();
                self.finding(&name, format!("line {number}: {problem}"));
                return;
            }
        };
        let (name, labels, value) = parsed;
        let family = self.family_of(&name);
        self.enter(&family, number);
        let mut key = labels.clone();
        key.sort();
        if !self.series.insert(format!("{name}{key:?}")) {
            self.finding(&family, format!("line {number}: duplicate series {line}"));
        }
        let mut seen = HashSet::new();
        for (label, _) in &labels {
            if !seen.insert(label.as_str()) {
                self.finding(&family, format!("line {number}: label {label} repeated"));
            }
        }
        let entry = self.families.entry(family.clone()).or_default();
        entry.samples += 1;
        let kind = entry.kind.clone();
        match kind.as_deref() {
            Some("counter") if value < 0.0 => {
                self.finding(&family, format!("line {number}: negative counter"));
            }
            Some("histogram") => {
                let entry = self.families.get_mut(&family).expect("entered above");
                if let Some(le) = name.strip_suffix("_bucket").and(label(&labels, "le")) {
                    let bound = parse_value(le).unwrap_or(f64::NAN);
                    let rest: Vec<_> = labels.iter().filter(|(n, _)| n != "le").cloned().collect();
                    entry.buckets.entry(rest).or_default().push((bound, value));
                } else if name.ends_with("_count") {
                    entry.counts.insert(labels, value);
                }
            }
            _ => {}
        }
    }

    /// The family a sample belongs to: histogram series carry suffixes.
    fn family_of(&self, name: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && self
                    .families
                    .get(base)
                    .is_some_and(|family| family.kind.as_deref() == Some("histogram"))
            {
                return base.to_owned();
            }
        }
        name.to_owned()
    }

    fn finish(mut self) -> Vec<String> {
        let mut names: Vec<String> = self.families.keys().cloned().collect();
        names.sort();
        for name in names {
            let family = &self.families[&name];
            let mut problems = Vec::new();
            if !family.help {
                problems.push("no help text".to_owned());
            }
            if family.kind.is_none() && family.samples > 0 {
                problems.push("no TYPE line".to_owned());
            }
            if family.kind.as_deref() == Some("counter") && !name.ends_with("_total") {
                problems.push("counter metrics should have \"_total\" suffix".to_owned());
            }
            if family.kind.as_deref() != Some("counter") && name.ends_with("_total") {
                problems.push("non-counter metrics should not have \"_total\" suffix".to_owned());
            }
            if family.kind.as_deref() == Some("histogram") {
                problems.extend(histogram_problems(family));
            }
            let aggregate = matches!(family.kind.as_deref(), Some("histogram" | "summary"));
            for suffix in ["_sum", "_count", "_bucket"] {
                if !aggregate && name.ends_with(suffix) {
                    problems.push(format!(
                        "non-histogram and non-summary metrics should not have \"{suffix}\" suffix"
                    ));
                }
            }
            for problem in problems {
                self.findings.push(format!("{name} {problem}"));
            }
        }
        self.findings
    }
}

fn histogram_problems(family: &Family) -> Vec<String> {
    let mut problems = Vec::new();
    for (labels, buckets) in &family.buckets {
        let mut sorted = buckets.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        if sorted.windows(2).any(|pair| pair[1].1 < pair[0].1) {
            problems.push(format!("{labels:?}: buckets are not cumulative"));
        }
        match sorted.last() {
            Some(&(bound, count)) if bound == f64::INFINITY => {
                if family
                    .counts
                    .get(labels)
                    .is_some_and(|total| *total != count)
                {
                    problems.push(format!("{labels:?}: +Inf bucket differs from _count"));
                }
            }
            _ => problems.push(format!("{labels:?}: no +Inf bucket")),
        }
    }
    problems
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(label, _)| label == name)
        .map(|(_, value)| value.as_str())
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn valid_help_escapes(help: &str) -> bool {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return false;
        }
    }
    true
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

type Parsed = (String, Vec<(String, String)>, f64);

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Parsed, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            while chars.next_if(|(_, c)| *c == ' ').is_some() {}
            if let Some((at, '}')) = chars.peek().copied() {
                rest = &inner[at + 1..];
                break;
            }
            let start = chars.peek().map(|(at, _)| *at).ok_or("unclosed labels")?;
            let mut end = start;
            while let Some((at, c)) = chars.next_if(|(_, c)| *c != '=') {
                end = at + c.len_utf8();
            }
            let label_name = inner[start..end].trim();
            if !valid_label_name(label_name) {
                return Err(format!("invalid label name {label_name:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('=')
                || chars.next().map(|(_, c)| c) != Some('"')
            {
                return Err(format!("label {label_name} has no quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in label value")),
                    },
                    Some(c) => value.push(c),
                    None => return Err("unterminated label value".to_owned()),
                }
            }
            labels.push((label_name.to_owned(), value));
            match chars.next() {
                Some((_, ',')) => continue,
                Some((at, '}')) => {
                    rest = &inner[at + 1..];
                    break;
                }
                _ => return Err("expected , or } after a label".to_owned()),
            }
        }
    }
    let mut parts = rest.split_whitespace();
    let value = parts.next().ok_or("no value")?;
    let value = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    if let Some(timestamp) = parts.next()
        && timestamp.parse::<i64>().is_err()
    {
        return Err(format!("bad timestamp {timestamp:?}"));
    }
    if parts.next().is_some() {
        return Err("text after the timestamp".to_owned());
    }
    Ok((name.to_owned(), labels, value))
}

/// Label names that are not `snake_case`, which promtool's lint reports; the families that
/// keep such names for dashboard compatibility say so in their docs.
pub fn camel_case_labels(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        if let Ok((name, labels, _)) = parse_sample(line) {
            for (label, _) in labels {
                let camel = label.chars().any(|c| c.is_ascii_uppercase());
                if camel && !found.contains(&(name.clone(), label.clone())) {
                    found.push((name.clone(), label));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{MetricKind, Unit, metric};

    const GAUGE: MetricDescription =
        metric("demo_depth", MetricKind::Gauge, Unit::Count, "A \\ b.");

    #[test]
    fn written_families_are_clean_and_escaped() {
        let mut out = String::new();
        write_family(
            &mut out,
            &GAUGE,
            &[
                Sample::new(vec![("queue", "a\"b\\c\nd".to_owned())], 3.0),
                Sample::new(vec![("queue", "plain".to_owned())], 0.5),
            ],
        );
        write_family(&mut out, &GAUGE, &[]);
        assert_eq!(
            out,
            "# HELP demo_depth A \\\\ b.\n# TYPE demo_depth gauge\n\
             demo_depth{queue=\"a\\\"b\\\\c\\nd\"} 3\ndemo_depth{queue=\"plain\"} 0.5\n"
        );
        assert_eq!(check(&out), Vec::<String>::new());
    }

    #[test]
    fn the_checker_finds_what_promtool_finds() {
        let cases = [
            ("x_total 1\n", "x_total no help text"),
            (
                "# HELP x h\n# TYPE x counter\nx 1\n",
                "should have \"_total\"",
            ),
            (
                "# HELP x_total h\n# TYPE x_total gauge\nx_total 1\n",
                "should not have",
            ),
            (
                "# HELP x h\n# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n",
                "duplicate series",
            ),
            ("# HELP x h\n# TYPE x gauge\nx{a=1} 1\n", "no quoted value"),
            ("# HELP x h\n# TYPE x gauge\nx one\n", "bad value"),
            (
                "# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx{b=\"c\"} 1\n",
                "two places",
            ),
            ("# HELP 1x h\n# TYPE 1x gauge\n", "invalid metric name"),
            (
                "# HELP x h\n# TYPE x gauge\nx{__a=\"1\"} 1\n",
                "invalid label name",
            ),
            (
                "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
                "not cumulative",
            ),
            (
                "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",
                "no +Inf",
            ),
            (
                "# HELP x h\n# TYPE x gauge\n# TYPE x gauge\nx 1\n",
                "second TYPE",
            ),
            (
                "# HELP x_sum h\n# TYPE x_sum gauge\nx_sum 1\n",
                "should not have \"_sum\"",
            ),
        ];
        for (text, expected) in cases {
            let findings = check(text);
            assert!(
                findings.iter().any(|finding| finding.contains(expected)),
                "{expected:?} not among {findings:?} for:\n{text}"
            );
        }
        let histogram = "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
        assert_eq!(check(histogram), Vec::<String>::new());
    }

    #[test]
    fn camel_case_label_names_are_listed() {
        let text = "# HELP g h\n# TYPE g gauge\ng{msgModel=\"1\",topic=\"t\"} 1\n";
        assert_eq!(
            camel_case_labels(text),
            vec![("g".to_owned(), "msgModel".to_owned())]
        );
    }
}
