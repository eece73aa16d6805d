//! Feeds arbitrary text to the SQL92 filter compiler and evaluates what compiles on the
//! properties that follow a NUL. Properties: see `tributary_rocketmq::check::check_sql_filter`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_rocketmq::check::check_sql_filter(data);
});
