//! Who pushes: the labels Remote-Write adds to every series that has none of its own
//! (`job`, `instance`), and OTLP's resource attributes (`service.name`,
//! `service.instance.id`, the user's), from the builder's settings with OpenTelemetry's
//! defaults.

use crate::config::Config;

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Identity {
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) resource: Vec<(String, String)>,
}

impl Identity {
    /// The identity of `config`: `service.name` (and `job`) as set, else
    /// `unknown_service:<executable>` (OpenTelemetry's resource specification);
    /// `service.instance.id` (and `instance`) as set, else `HOSTNAME:PID`.
    pub(crate) fn of(config: &Config) -> Self {
        let service = config.push.service_name.clone().unwrap_or_else(|| {
            let executable = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_default();
            format!("unknown_service:{executable}")
        });
        let instance = config.push.instance_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            format!("{host}:{}", std::process::id())
        });
        let mut resource = vec![
            ("service.name".to_owned(), service.clone()),
            ("service.instance.id".to_owned(), instance.clone()),
        ];
        for (key, value) in &config.push.resource {
            match resource.iter_mut().find(|(k, _)| k == key) {
                Some(kept) => kept.1 = value.clone(),
                None => resource.push((key.clone(), value.clone())),
            }
        }
        Identity {
            labels: vec![
                ("job".to_owned(), service),
                ("instance".to_owned(), instance),
            ],
            resource,
        }
    }
}

/// As the start of pushing logs it: `job=... instance=... service.name=... ...`.
impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs = self.labels.iter().chain(&self.resource);
        for (at, (key, value)) in pairs.enumerate() {
            let space = if at == 0 { "" } else { " " };
            write!(f, "{space}{key}={value:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_comes_from_the_builder_with_opentelemetrys_defaults() {
        let mut config = Config::default();
        let defaults = Identity::of(&config);
        assert_eq!(defaults.labels[0].0, "job");
        let exe = std::env::current_exe().expect("an executable");
        let name = exe.file_name().expect("a name").to_string_lossy();
        assert_eq!(defaults.labels[0].1, format!("unknown_service:{name}"));
        assert_eq!(defaults.resource[0].1, defaults.labels[0].1);
        assert!(defaults.labels[1]
            .1
            .ends_with(&format!(":{}", std::process::id())));
        config.push.service_name = Some("api".into());
        config.push.instance_id = Some("pod-1".into());
        config.push.resource = vec![
            ("deployment.environment".into(), "prod".into()),
            ("service.name".into(), "override".into()),
        ];
        let set = Identity::of(&config);
        assert_eq!(
            set.labels,
            [
                ("job".into(), "api".into()),
                ("instance".into(), "pod-1".into())
            ]
        );
        assert_eq!(set.resource[0], ("service.name".into(), "override".into()));
        assert_eq!(
            set.resource[2],
            ("deployment.environment".into(), "prod".into())
        );
    }
}
