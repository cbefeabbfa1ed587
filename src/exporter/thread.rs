//! The thread an exporter runs on: a thread of its own with a current-thread tokio
//! runtime, built (and dropped) on it, so that a server or a pusher works whether or not the
//! application uses tokio (dropping a runtime is not allowed inside the caller's async
//! code); a start returns once the thread says it is ready, or why it is not.

use std::io;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use crate::Error;

/// How the exporter's thread tells its starter that it is ready, or why it cannot be.
pub(crate) struct Ready<T>(SyncSender<Result<T, Error>>);

impl<T> Ready<T> {
    /// Tells the starter; `start` returns this outcome.
    pub(crate) fn send(self, outcome: Result<T, Error>) {
        // The starter waits for it; it is gone only if it panicked.
        let _ = self.0.send(outcome);
    }
}

/// Starts a thread named `name` that builds a current-thread runtime and runs `body` with
/// it; returns what `body` sent to its [`Ready`], and the thread. `body` owns the runtime:
/// the runtime is built, and dropped, on that thread, since dropping one is not allowed
/// inside the caller's async code.
///
/// # Errors
/// `error` of the cause if the thread or the runtime cannot be made, or the thread ends
/// without a word; whatever error `body` sent (the thread is joined first).
pub(crate) fn start<T, R>(
    name: &str,
    error: fn(io::Error) -> Error,
    body: impl FnOnce(tokio::runtime::Runtime, Ready<T>) -> R + Send + 'static,
) -> Result<(T, JoinHandle<R>), Error>
where
    T: Send + 'static,
    R: Default + Send + 'static,
{
    let (ready, started) = sync_channel(1);
    let ready = Ready(ready);
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => body(runtime, ready),
                Err(e) => {
                    ready.send(Err(error(e)));
                    R::default()
                }
            }
        })
        .map_err(error)?;
    let outcome = started.recv().unwrap_or_else(|_| {
        Err(error(io::Error::other(format!(
            "the {name} thread ended before it was ready"
        ))))
    });
    match outcome {
        Ok(value) => Ok((value, thread)),
        Err(e) => {
            let _ = thread.join();
            Err(e)
        }
    }
}

/// Runs `run()`'s future to completion on a thread named `name`, as [`start`] does, ready
/// as soon as its runtime is up.
#[cfg(feature = "push")]
pub(crate) fn spawn<T, F>(
    name: &str,
    error: fn(io::Error) -> Error,
    run: impl FnOnce() -> F + Send + 'static,
) -> Result<JoinHandle<T>, Error>
where
    T: Default + Send + 'static,
    F: std::future::Future<Output = T>,
{
    let ((), thread) = start(name, error, move |runtime, ready| {
        ready.send(Ok(()));
        runtime.block_on(run())
    })?;
    Ok(thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_returns_what_the_thread_sent_and_its_errors() {
        let (value, thread) = start("test-ok", Error::Runtime, |runtime, ready| {
            ready.send(Ok(7));
            runtime.block_on(async { 3 })
        })
        .expect("ready");
        assert_eq!((value, thread.join().ok()), (7, Some(3)));

        let refused = start::<(), ()>("test-err", Error::Runtime, |_, ready| {
            ready.send(Err(Error::AlreadyExported));
        });
        assert!(matches!(refused, Err(Error::AlreadyExported)));

        // A thread that ends without a word is a runtime error, not a hang.
        let silent = start::<(), ()>("test-silent", Error::Runtime, |_, ready| drop(ready));
        assert!(matches!(silent, Err(Error::Runtime(_))));
    }
}
