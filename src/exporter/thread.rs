//! A thread of an exporter's own, running a current-thread tokio runtime built (and
//! dropped) on it: dropping a runtime is not allowed inside the caller's async code, and
//! an exporter works inside or outside one.

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

use crate::Error;

/// Runs `run()`'s future to completion on a thread named `name`; returns once its runtime
/// is up. `error` says which exporter failed to start.
pub(crate) fn spawn<T, F>(
    name: &str,
    error: fn(io::Error) -> Error,
    run: impl FnOnce() -> F + Send + 'static,
) -> Result<JoinHandle<T>, Error>
where
    T: Default + Send + 'static,
    F: Future<Output = T>,
{
    let (ready, started) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return T::default();
                }
            };
            let _ = ready.send(Ok(()));
            runtime.block_on(run())
        })
        .map_err(error)?;
    let outcome = started
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the thread ended before it was ready")));
    match outcome {
        Ok(()) => Ok(thread),
        Err(e) => {
            let _ = thread.join();
            Err(error(e))
        }
    }
}
