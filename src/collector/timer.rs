//! Timers: measure a span of time and record it, exactly once.
//!
//! [`Timer::stop`] returns the elapsed seconds *and* records them into the histogram named in
//! `start_timer` (the Go design returned the value and recorded nothing). A timer dropped
//! without `stop` records at drop, so `let _t = collector.start_timer("op_seconds");` times
//! the enclosing scope. Either way a timer records once.

use std::fmt;

use metrics::Histogram;
use quanta::Instant;

enum Sink {
    None,
    Histogram(Histogram),
    Callback(Box<dyn FnOnce(f64) + Send>),
}

/// A running measurement; see the module documentation.
///
/// ```
/// use porter_metrics::{Collector, LocalRecorder};
///
/// let recorder = LocalRecorder::new();
/// let collector = recorder.collector();
/// {
///     let _scope = collector.start_timer("scope_seconds"); // records when dropped
/// }
/// let seconds = collector.start_timer("call_seconds").stop(); // records and returns
/// let text = recorder.render();
/// assert!(text.contains("scope_seconds_count 1"));
/// assert!(text.contains(&format!("call_seconds_sum {seconds}")));
/// ```
#[must_use = "a timer records when stopped or dropped; dropping it at once records ~0 s"]
pub struct Timer {
    start: Instant,
    sink: Sink,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("elapsed", &self.elapsed())
            .field("records", &!matches!(self.sink, Sink::None))
            .finish()
    }
}

impl Timer {
    /// A timer that records into `histogram`, for collectors built on `metrics` handles.
    ///
    /// ```
    /// let recorder = porter_metrics::LocalRecorder::new();
    /// let histogram = metrics::with_local_recorder(&recorder, || metrics::histogram!("op_seconds"));
    /// let seconds = porter_metrics::Timer::recording_into(histogram).stop();
    /// assert!(recorder.render().contains(&format!("op_seconds_sum {seconds}")));
    /// ```
    pub fn recording_into(histogram: Histogram) -> Self {
        Self {
            start: Instant::now(),
            sink: Sink::Histogram(histogram),
        }
    }

    /// A timer that hands the elapsed seconds to `record`, for custom collectors.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let seen = Arc::new(Mutex::new(None));
    /// let sink = seen.clone();
    /// let timer = porter_metrics::Timer::with_callback(move |s| *sink.lock().unwrap() = Some(s));
    /// let elapsed = timer.stop();
    /// assert_eq!(*seen.lock().unwrap(), Some(elapsed));
    /// ```
    pub fn with_callback(record: impl FnOnce(f64) + Send + 'static) -> Self {
        Self {
            start: Instant::now(),
            sink: Sink::Callback(Box::new(record)),
        }
    }

    /// A timer that measures but records nothing (what [`NoopCollector`](crate::NoopCollector)
    /// returns).
    ///
    /// ```
    /// let timer = porter_metrics::Timer::unrecorded();
    /// std::thread::sleep(std::time::Duration::from_millis(2));
    /// assert!(timer.stop() >= 0.002);
    /// ```
    pub fn unrecorded() -> Self {
        Self {
            start: Instant::now(),
            sink: Sink::None,
        }
    }

    /// Seconds since the timer started, without stopping it.
    ///
    /// ```
    /// let timer = porter_metrics::Timer::unrecorded();
    /// assert!(timer.elapsed() <= timer.stop());
    /// ```
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Stops the timer, records the elapsed seconds, and returns them.
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Collector};
    ///
    /// let capture = Capture::new();
    /// let timer = capture.collector().start_timer("job_seconds");
    /// let seconds = timer.stop();
    /// let job = capture.exposition().unwrap().histogram("job_seconds", &[]).unwrap();
    /// assert_eq!((job.count, job.sum), (1, seconds)); // recorded once, the value returned
    /// ```
    pub fn stop(mut self) -> f64 {
        self.finish()
    }

    fn finish(&mut self) -> f64 {
        let seconds = self.elapsed();
        match std::mem::replace(&mut self.sink, Sink::None) {
            Sink::None => {}
            Sink::Histogram(histogram) => histogram.record(seconds),
            Sink::Callback(record) => record(seconds),
        }
        seconds
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.finish();
    }
}
