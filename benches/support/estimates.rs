//! Reading criterion's results back, for the tables of ratios the benches print.

use std::path::PathBuf;
use std::time::SystemTime;

/// Where criterion writes its results (as criterion decides it, minus `cargo metadata`).
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // `CARGO_TARGET_TMPDIR` is `<target dir>/tmp`.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("criterion")
}

/// The median (ns) of the benchmark at `path` (group, id, parameter...) written since
/// `since` (this run), if any.
pub fn median(since: SystemTime, path: &[&str]) -> Option<f64> {
    let mut file = criterion_home();
    for part in path {
        file.push(part);
    }
    file.push("new");
    file.push("estimates.json");
    let fresh = std::fs::metadata(&file).ok()?.modified().ok()? >= since;
    if !fresh {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}
