//! Settings: defaults, then an optional `ordo.toml`, then `ORDO_*` environment variables,
//! then command-line flags (applied by the CLI).

use crate::Policy;
use crate::error::{Error, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://PATH`, a plain file path, or `postgres://…`.
    pub database_url: String,
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Shared secret for the payment provider's webhook signatures.
    pub webhook_secret: Option<String>,
    pub payment_ttl_minutes: u32,
    pub unpaid_timeout_minutes: u32,
    /// How often the built-in scheduler runs the sweep.
    pub sweep_interval_seconds: u64,
    /// Orders claimed and cancelled per sweep transaction.
    pub sweep_batch_size: u32,
    pub max_connections: u32,
    /// Log filter, such as `info` or `ordo=debug`.
    pub log: String,
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field("listen", &self.listen)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("payment_ttl_minutes", &self.payment_ttl_minutes)
            .field("unpaid_timeout_minutes", &self.unpaid_timeout_minutes)
            .field("sweep_interval_seconds", &self.sweep_interval_seconds)
            .field("sweep_batch_size", &self.sweep_batch_size)
            .field("max_connections", &self.max_connections)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "sqlite://ordo.db".to_owned(),
            listen: "127.0.0.1:8080".to_owned(),
            webhook_secret: None,
            payment_ttl_minutes: 30,
            unpaid_timeout_minutes: 30,
            sweep_interval_seconds: 60,
            sweep_batch_size: 1000,
            max_connections: 16,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
        }
    }
}

/// The environment variables ordo reads, besides `ORDO_CONFIG`.
const KEYS: &[&str] = &[
    "database_url",
    "listen",
    "webhook_secret",
    "payment_ttl_minutes",
    "unpaid_timeout_minutes",
    "sweep_interval_seconds",
    "sweep_batch_size",
    "max_connections",
    "log",
    "log_format",
];

impl Settings {
    /// Loads defaults, then `config_file` (or `ordo.toml` if present), then `ORDO_*`.
    pub fn load(config_file: Option<&Path>) -> Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) => {
                if !path.exists() {
                    return Err(Error::Config(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("ordo.toml")),
        }
        figment = figment.merge(Env::prefixed("ORDO_").only(KEYS));
        let settings: Settings = figment
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<()> {
        crate::db::Dialect::from_url(&self.database_url)?;
        if self.sweep_batch_size == 0 || self.sweep_batch_size > 100_000 {
            return Err(Error::Config(
                "sweep_batch_size must be between 1 and 100000".into(),
            ));
        }
        if self.sweep_interval_seconds == 0 {
            return Err(Error::Config(
                "sweep_interval_seconds must be at least 1".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(Error::Config("max_connections must be at least 1".into()));
        }
        const MAX_MINUTES: u32 = 60 * 24 * 365;
        if self.payment_ttl_minutes > MAX_MINUTES || self.unpaid_timeout_minutes > MAX_MINUTES {
            return Err(Error::Config(
                "durations may be at most a year (525600 minutes)".into(),
            ));
        }
        Ok(())
    }

    pub fn policy(&self) -> Policy {
        Policy {
            payment_ttl_ms: i64::from(self.payment_ttl_minutes) * 60_000,
            unpaid_timeout_ms: i64::from(self.unpaid_timeout_minutes) * 60_000,
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    #[test]
    fn defaults_work_with_nothing_set() {
        figment::Jail::expect_with(|_jail| {
            let s = Settings::load(None).expect("defaults load");
            assert_eq!(s, Settings::default());
            assert_eq!(s.policy(), Policy::default());
            Ok(())
        });
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "ordo.toml",
                "listen = \"0.0.0.0:9000\"\npayment_ttl_minutes = 5\nunpaid_timeout_minutes = 7",
            )?;
            jail.set_env("ORDO_UNPAID_TIMEOUT_MINUTES", "0");
            jail.set_env("ORDO_LOG_FORMAT", "json");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.listen, "0.0.0.0:9000");
            assert_eq!(s.payment_ttl_minutes, 5);
            assert_eq!(s.unpaid_timeout_minutes, 0);
            assert_eq!(s.log_format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_configuration_errors() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ORDO_PAYMENT_TTL_MINUTES", "soon");
            assert!(matches!(Settings::load(None), Err(Error::Config(_))));
            jail.set_env("ORDO_PAYMENT_TTL_MINUTES", "5");
            jail.set_env("ORDO_DATABASE_URL", "mysql://x");
            assert!(matches!(Settings::load(None), Err(Error::Config(_))));
            jail.set_env("ORDO_DATABASE_URL", "ordo.db");
            jail.create_file("ordo.toml", "colour = \"blue\"")?;
            assert!(matches!(Settings::load(None), Err(Error::Config(_))));
            Ok(())
        });
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        let s = Settings {
            webhook_secret: Some("shh".into()),
            ..Settings::default()
        };
        assert!(!format!("{s:?}").contains("shh"));
    }
}
