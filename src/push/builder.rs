//! The [`Builder`]'s push settings (feature `push`): targets, and who pushes.

use crate::{Builder, Error};

impl Builder {
    /// Adds a push target (feature `push`): a [`MetricsServer`](crate::MetricsServer)
    /// built from this builder pushes to it while it serves, a [`Pusher`](crate::Pusher)
    /// without serving. Any number of targets, each with its own protocol and interval;
    /// see [`PushTarget`](crate::PushTarget).
    ///
    /// ```
    /// use porter_metrics::{Builder, PushTarget};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = Builder::new()
    ///     .service_name("checkout")
    ///     .push(PushTarget::pushgateway("http://127.0.0.1:9091/metrics/job/checkout")?)
    ///     .build("127.0.0.1:0"); // serves, and pushes every 10 s once started
    /// # let _ = server;
    /// # Ok(())
    /// # }
    /// ```
    pub fn push(mut self, target: crate::PushTarget) -> Self {
        self.config.push.targets.push(target);
        self
    }

    /// Who pushes: OTLP's `service.name` resource attribute, and the `job` label
    /// Remote-Write adds to every series that has none. `unknown_service:<executable>`
    /// unless set, as OpenTelemetry's resource specification says.
    pub fn service_name(mut self, name: &str) -> Self {
        self.config.push.service_name = Some(name.to_owned());
        self
    }

    /// Which one: OTLP's `service.instance.id` resource attribute, and the `instance` label
    /// Remote-Write adds to every series that has none. `HOSTNAME:PID` unless set.
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let builder = porter_metrics::Builder::new()
    ///     .service_name("checkout")
    ///     .service_instance_id("checkout-7d9f")
    ///     .resource_attribute("deployment.environment.name", "prod");
    /// # let _ = builder;
    /// # Ok(())
    /// # }
    /// ```
    pub fn service_instance_id(mut self, id: &str) -> Self {
        self.config.push.instance_id = Some(id.to_owned());
        self
    }

    /// An OTLP resource attribute beside `service.name` and `service.instance.id` (set
    /// again, a key is replaced). Remote-Write does not carry them.
    pub fn resource_attribute(mut self, key: &str, value: &str) -> Self {
        let resource = &mut self.config.push.resource;
        resource.retain(|(k, _)| k != key);
        resource.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A [`Pusher`](crate::Pusher) that pushes to this builder's targets without serving
    /// (feature `push`): every interval, and once more at `stop()` after `start()`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use porter_metrics::{Builder, Error, PushTarget};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let gateway = PushTarget::pushgateway("http://127.0.0.1:9091/metrics/job/nightly_import")?
    ///     .interval(Duration::from_secs(10))?;
    /// let pusher = Builder::new().standalone().push(gateway.clone()).build_pusher()?;
    /// # let _ = pusher;
    /// // A pusher has no listener: listener settings are refused.
    /// let allowed = Builder::new().allow("10.0.0.0/8")?.push(gateway).build_pusher();
    /// assert!(matches!(allowed, Err(Error::NotApplicable { setting: "allow", .. })));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::NoPushTarget`] if no target was added; [`Error::NotApplicable`] for a
    /// listener setting (`allow`, `header_read_timeout`); [`Error::InvalidPushSetting`]
    /// for a target that marks series stale with an interval not shorter than the idle
    /// timeout.
    pub fn build_pusher(self) -> Result<crate::Pusher, Error> {
        crate::Pusher::new(self.config)
    }
}
