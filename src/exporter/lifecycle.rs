//! The lifecycle every exporter shares: stopped, starting, running. The lock is held only
//! to move between them; the work of starting (binding the pipeline, which runs the
//! recorder, and opening sockets) and stopping, and every log line, run outside it.

use std::sync::{Mutex, PoisonError};

use crate::pipeline::ExportClaim;
use crate::Error;

enum State<T> {
    Stopped,
    Starting,
    Running(ExportClaim, T),
}

/// See the module documentation.
pub(crate) struct Lifecycle<T>(Mutex<State<T>>);

impl<T> Default for Lifecycle<T> {
    fn default() -> Self {
        Self(Mutex::new(State::Stopped))
    }
}

impl<T> Lifecycle<T> {
    /// Starts with `run` unless starting or running already (then `busy`, given what runs,
    /// if anything, is the error). A failed `run` leaves it stopped.
    pub(crate) fn start(
        &self,
        busy: impl FnOnce(Option<&T>) -> Error,
        run: impl FnOnce() -> Result<(ExportClaim, T), Error>,
    ) -> Result<(), Error> {
        {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match &*state {
                State::Stopped => *state = State::Starting,
                State::Starting => return Err(busy(None)),
                State::Running(_, running) => return Err(busy(Some(running))),
            }
        }
        let outcome = run();
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok((claim, running)) => {
                *state = State::Running(claim, running);
                Ok(())
            }
            Err(e) => {
                *state = State::Stopped;
                Err(e)
            }
        }
    }

    /// What runs, taken out (to be stopped by the caller); `None` unless running.
    pub(crate) fn stop(&self) -> Option<(ExportClaim, T)> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *state, State::Stopped) {
            State::Running(claim, running) => Some((claim, running)),
            other => {
                *state = other;
                None
            }
        }
    }

    /// `f` of what runs, if running.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        match &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Running(_, running) => Some(f(running)),
            _ => None,
        }
    }
}
