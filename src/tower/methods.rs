//! Which gRPC methods a server serves: only those get their own `grpc_service` and
//! `grpc_method` labels. Any other path a client sends is labelled `unknown`, so no client
//! can mint series by calling made-up methods (grpc-go never shows them to
//! go-grpc-middleware; a tower layer sees every path).
//!
//! The methods are either named ([`MetricsLayer::grpc_methods`](super::MetricsLayer::grpc_methods)),
//! or learned at the response head: a path is served unless its answer is `Unimplemented`
//! (what a tonic router answers, trailers-only, for a method it does not serve) or an HTTP
//! 404. A call to a path not yet learned has its labels decided at its head, so even the
//! first call of each method is labelled with it. At most [`LEARNED`] paths are learned;
//! past that, new paths are `unknown`, and the first one is logged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::grpc::GrpcCode;

/// How many paths a layer learns at most.
pub(crate) const LEARNED: usize = 1024;

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

    /// Whether `path` gets its own labels, if that is known before the response: always
    /// for named methods and the client side; for learned ones, once learned.
    pub(crate) fn at_start(&self, path: &str) -> Option<bool> {
        match self {
            Methods::Learned(_) => self.knows(path).then_some(true),
            _ => Some(self.knows(path)),
        }
    }

    /// A call to `path` was answered with `code` (its head's, `None` for a response that
    /// goes on): learns the path if that answer says it is served. Whether the path gets
    /// its own labels.
    pub(crate) fn answered(&self, path: &str, code: Option<GrpcCode>) -> bool {
        let Methods::Learned(learned) = self else {
            return self.knows(path);
        };
        if code == Some(GrpcCode::Unimplemented) {
            return false;
        }
        let (known, full) = {
            let mut paths = learned
                .paths
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if paths.len() < LEARNED {
                paths.insert(path.to_owned());
                (true, false)
            } else {
                let known = paths.contains(path);
                (known, !known)
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
        known
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
        assert!(!methods.answered("/echo.Echo/Whisper", None));
        assert!(
            !methods.knows("/echo.Echo/Whisper"),
            "named methods learn nothing"
        );
        assert_eq!(methods.at_start("/echo.Echo/Whisper"), Some(false));
    }

    #[test]
    fn a_path_is_learned_once_served_and_learning_is_bounded() {
        let methods = Methods::learned();
        assert_eq!(methods.at_start("/a.B/C"), None, "decided at the head");
        assert!(!methods.answered("/a.B/C", Some(GrpcCode::Unimplemented)));
        assert!(!methods.knows("/a.B/C"), "the router does not serve it");
        // NotFound: served, by the handler.
        assert!(methods.answered("/a.B/C", Some(GrpcCode::NotFound)));
        assert_eq!(methods.at_start("/a.B/C"), Some(true));
        assert!(methods.answered("/a.B/D", None), "a response that goes on");
        for i in 0..LEARNED * 2 {
            methods.answered(&format!("/x.Y/M{i}"), Some(GrpcCode::Ok));
        }
        let known = (0..LEARNED * 2)
            .filter(|i| methods.knows(&format!("/x.Y/M{i}")))
            .count();
        assert_eq!(known, LEARNED - 2, "at most {LEARNED} paths in all");
        assert!(Methods::All.knows("/any/thing"));
    }
}
