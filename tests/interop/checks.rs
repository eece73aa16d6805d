//! Collects mismatches per aspect (values, keys, headers, ...) over a whole run so one failing
//! test names every part of the spec it found broken, with a count and the first example,
//! instead of stopping at the first record.

use std::collections::BTreeMap;
use std::fmt::Debug;

#[derive(Debug, Default)]
pub(crate) struct Checks {
    failures: BTreeMap<&'static str, (usize, String)>,
}

impl Checks {
    /// Records a failure of `aspect` for record `n` unless `actual == expected`.
    pub(crate) fn eq<T: PartialEq + Debug>(
        &mut self,
        aspect: &'static str,
        n: usize,
        actual: T,
        expected: T,
    ) {
        if actual != expected {
            self.fail(aspect, n, format!("got {actual:?}, want {expected:?}"));
        }
    }

    /// Records a failure of `aspect` for record `n` unless `ok`; `detail` explains it.
    pub(crate) fn that(
        &mut self,
        aspect: &'static str,
        n: usize,
        ok: bool,
        detail: impl FnOnce() -> String,
    ) {
        if !ok {
            self.fail(aspect, n, detail());
        }
    }

    fn fail(&mut self, aspect: &'static str, n: usize, detail: String) {
        let entry = self
            .failures
            .entry(aspect)
            .or_insert_with(|| (0, format!("record {n}: {detail}")));
        entry.0 += 1;
    }

    /// Panics with every failed aspect of `direction`, if any.
    pub(crate) fn finish(self, direction: &str, total: usize) {
        if self.failures.is_empty() {
            return;
        }
        let mut report = format!("{direction}: mismatches against docs/interop.md\n");
        for (aspect, (count, first)) in &self.failures {
            report.push_str(&format!(
                "  {aspect}: {count} of {total} wrong; first: {first}\n"
            ));
        }
        panic!("{report}");
    }
}
