//! Which gRPC methods a server serves: only those get their own `grpc_service` and
//! `grpc_method` labels. Any other path a client sends is labelled `unknown`, so no client
//! can mint series by calling made-up methods (grpc-go never shows them to
//! go-grpc-middleware; a tower layer sees every path).
//!
//! The methods are either named ([`MetricsLayer::grpc_methods`](super::MetricsLayer::grpc_methods)),
//! or learned: a path becomes known once a call to it ends with any code but
//! `Unimplemented`, which is what a tonic router answers for a method it does not serve.
//! Until then (its first call included) it is `unknown`. At most [`LEARNED`] paths are
//! learned; past that, new paths stay `unknown`, and the first one is logged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// How many paths a layer learns at most.
pub(crate) const LEARNED: usize = 1024;

/// The `grpc-status` code of `Unimplemented`.
const UNIMPLEMENTED: usize = 12;

/// See the module documentation.
#[derive(Clone)]
pub(crate) enum Methods {
    /// Every path is its own (the client side: the paths are the application's own calls).
    All,
    /// The paths the user named, `/package.Service/Method`.
    Named(Arc<HashSet<String>>),
    /// The paths learned so far.
    Learned(Arc<Learned>),
}

#[derive(Default)]
pub(crate) struct Learned {
    paths: RwLock<HashSet<String>>,
    /// Whether the limit was reached (and logged).
    full: AtomicBool,
}

impl Methods {
    /// Learned, from nothing.
    pub(crate) fn learned() -> Self {
        Methods::Learned(Arc::default())
    }

    /// The paths named, each as `/package.Service/Method` (a missing leading `/` added).
    pub(crate) fn named(paths: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let paths = paths
            .into_iter()
            .map(|p| {
                let p = p.as_ref().trim();
                match p.starts_with('/') {
                    true => p.to_owned(),
                    false => format!("/{p}"),
                }
            })
            .collect();
        Methods::Named(Arc::new(paths))
    }

    /// Whether `path` gets its own labels.
    pub(crate) fn knows(&self, path: &str) -> bool {
        match self {
            Methods::All => true,
            Methods::Named(paths) => paths.contains(path),
            Methods::Learned(learned) => learned
                .paths
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(path),
        }
    }

    /// A call to an unknown `path` ended with `code`: learn the path if it was served.
    pub(crate) fn ended(&self, path: &str, code: usize) {
        let Methods::Learned(learned) = self else {
            return;
        };
        if code == UNIMPLEMENTED {
            return;
        }
        let full = {
            let mut paths = learned
                .paths
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if paths.len() < LEARNED {
                paths.insert(path.to_owned());
                false
            } else {
                !paths.contains(path)
            }
        };
        // Logged outside the lock, once.
        if full && !learned.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = LEARNED,
                "porter-metrics: a gRPC layer learned as many methods as it keeps; new ones \
                 are labelled unknown (name them with MetricsLayer::grpc_methods)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_methods_are_known_and_nothing_else() {
        let methods = Methods::named(["/echo.Echo/Say", "echo.Echo/Shout"]);
        assert!(methods.knows("/echo.Echo/Say"));
        assert!(methods.knows("/echo.Echo/Shout"));
        assert!(!methods.knows("/echo.Echo/Whisper"));
        methods.ended("/echo.Echo/Whisper", 0);
        assert!(
            !methods.knows("/echo.Echo/Whisper"),
            "named methods learn nothing"
        );
    }

    #[test]
    fn a_path_is_learned_once_served_and_learning_is_bounded() {
        let methods = Methods::learned();
        assert!(!methods.knows("/a.B/C"));
        methods.ended("/a.B/C", UNIMPLEMENTED);
        assert!(!methods.knows("/a.B/C"), "the router does not serve it");
        methods.ended("/a.B/C", 5); // NotFound: served, by the handler
        assert!(methods.knows("/a.B/C"));
        for i in 0..LEARNED * 2 {
            methods.ended(&format!("/x.Y/M{i}"), 0);
        }
        let known = (0..LEARNED * 2)
            .filter(|i| methods.knows(&format!("/x.Y/M{i}")))
            .count();
        assert_eq!(known, LEARNED - 1, "at most {LEARNED} paths in all");
        assert!(Methods::All.knows("/any/thing"));
    }
}
