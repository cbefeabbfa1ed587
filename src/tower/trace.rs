//! Where an exemplar's trace id comes from: the W3C `traceparent` header, a function of
//! the user's, or nowhere.

use std::sync::Arc;

/// Finds a request's trace id, for exemplars.
pub(crate) type TraceOf = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// Where exemplars' trace ids come from.
#[derive(Clone)]
pub(crate) enum Traces {
    /// The W3C `traceparent` header.
    W3c,
    /// A function of the user's.
    Custom(TraceOf),
    /// No exemplars.
    Off,
}

/// A call's trace id: inline when it comes from `traceparent`.
pub(crate) enum Trace {
    None,
    W3c([u8; 32]),
    Custom(String),
}

impl Trace {
    pub(crate) fn of(traces: &Traces, parts: &http::request::Parts) -> Self {
        match traces {
            Traces::W3c => parts
                .headers
                .get("traceparent")
                .and_then(|v| traceparent_id(v.as_bytes()))
                .map_or(Trace::None, Trace::W3c),
            Traces::Custom(of) => of(parts).map_or(Trace::None, Trace::Custom),
            Traces::Off => Trace::None,
        }
    }

    pub(crate) fn id(&self) -> Option<&str> {
        match self {
            Trace::None => None,
            Trace::W3c(id) => std::str::from_utf8(id).ok(),
            Trace::Custom(id) => Some(id),
        }
    }
}

/// The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`): lowercase
/// hex, not all zeros, version not `ff`; `None` for anything else.
pub(crate) fn traceparent_id(value: &[u8]) -> Option<[u8; 32]> {
    let hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |b: &[u8]| b.iter().all(|c| *c == b'0');
    let (version, trace, parent, flags) = (
        value.get(0..2)?,
        value.get(3..35)?,
        value.get(36..52)?,
        value.get(53..55)?,
    );
    let dashes = [2, 35, 52].iter().all(|at| value.get(*at) == Some(&b'-'));
    let tail_ok = value.len() == 55 || (version != b"00" && value.get(55) == Some(&b'-'));
    if !dashes || !tail_ok || version == b"ff" || zero(trace) || zero(parent) {
        return None;
    }
    if !(hex(version) && hex(trace) && hex(parent) && hex(flags)) {
        return None;
    }
    trace.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let id = |v: &str| {
            traceparent_id(v.as_bytes()).map(|id| String::from_utf8_lossy(&id).into_owned())
        };
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            id(good).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert_eq!(id(bad), None, "{bad}");
        }
        // A later version may append fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert!(id(later).is_some());
    }
}
