//! The operator's kit in `examples/prometheus/`: the Prometheus config and alert rules are
//! valid and their unit tests pass under `promtool`. (That every metric the dashboard and
//! the alerts query is one the Flight SQL example exports is checked in
//! `examples/flight-sql/tests/`.)

mod common;

use std::process::Command;

const KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prometheus");

/// Runs `promtool` (the binary at `path`) with `args` in the kit's folder; asserts success.
fn promtool(path: &std::path::Path, args: &[&str]) {
    let out = Command::new(path)
        .args(args)
        .current_dir(KIT)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn the_prometheus_config_and_rules_are_valid_and_their_unit_tests_pass() {
    let promtool_2 = common::require_binary("promtool", "prometheus");
    promtool(&promtool_2, &["check", "config", "prometheus.yml"]);
    promtool(&promtool_2, &["check", "rules", "alerts.yml"]);
    promtool(&promtool_2, &["test", "rules", "alerts_test.yml"]);
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn the_prometheus_3_config_is_valid_and_the_rules_pass_under_promtool_3() {
    let promtool_3 = common::sid_binary("promtool");
    promtool(&promtool_3, &["check", "config", "prometheus3.yml"]);
    promtool(&promtool_3, &["check", "rules", "alerts.yml"]);
    promtool(&promtool_3, &["test", "rules", "alerts_test.yml"]);
}
