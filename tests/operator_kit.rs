//! The operator's kit in `examples/prometheus/`: the Prometheus config and alert rules are
//! valid and their unit tests pass under `promtool`. (That every metric the dashboard and
//! the alerts query is one the Flight SQL example exports is checked in
//! `examples/flight-sql/tests/`.)

mod common;

use std::process::Command;

const KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prometheus");

fn promtool(args: &[&str]) {
    let promtool = common::require_binary("promtool", "prometheus");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(KIT)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn the_prometheus_config_and_rules_are_valid_and_their_unit_tests_pass() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn the_prometheus_3_config_is_valid_and_the_rules_pass_under_promtool_3() {
    let promtool = common::sid_binary("promtool");
    for args in [
        &["check", "config", "prometheus3.yml"][..],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(KIT)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool 3.5 {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
