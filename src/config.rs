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
    /// Most unpaid orders one customer may hold (0: no limit).
    pub max_pending_orders_per_customer: u32,
    /// Most units in one order (0: no limit beyond 1,000,000 per product).
    pub max_units_per_order: u32,
    /// Requests per second per token (or client address without one), on average
    /// (0: no rate limit).
    pub rate_limit_per_second: u32,
    /// Requests a client may make at once before the rate applies.
    pub rate_limit_burst: u32,
    /// Minutes before its unpaid deadline an order gets `order.payment_reminder` (0: off).
    pub payment_reminder_lead_minutes: u32,
    /// Whether changes write events (the outbox that webhooks and the broker read).
    pub events: bool,
    /// Seconds a webhook receiver has to answer.
    pub webhook_timeout_seconds: u64,
    /// Lets webhook endpoints be `http` and private, loopback or link-local addresses
    /// (development and tests).
    pub webhook_allow_private: bool,
    /// With this set (`amqp://user:pass@host:5672/%2f`), every event is also published to
    /// the topic exchange `ordo.events`.
    pub events_amqp_url: Option<String>,
    /// The address customers' browsers and providers reach ordo at (`https://shop.example`):
    /// notification URLs are built from it.
    pub public_url: Option<String>,
    /// The provider of an order's first payment: `manual`, `wechatpay`, `alipay` or `stripe`.
    pub default_payment_provider: PaymentProvider,
    /// Most provider calls in flight at once per process (the sweep asks this many at once).
    pub provider_concurrency: u32,
    /// Seconds a provider has to answer one call.
    pub provider_timeout_seconds: u64,
    /// Open provider payments with no notification this long after they were opened are
    /// queried by the scheduler.
    pub reconcile_after_minutes: u32,
    /// Refund late payments (a success after the order was cancelled) through their provider
    /// by itself.
    pub auto_refund_late_payments: bool,
    /// Refuse orders without a shipping address.
    pub require_shipping_address: bool,
    /// The IANA time zone the console shows times in and buckets its charts by
    /// (`Asia/Shanghai`); the API stays UTC.
    pub time_zone: String,
    /// The shop's own currency (ISO 4217), which the console shows with its local symbol
    /// (`¥12.00` for CNY in both languages); unset: every currency unambiguous (`CN¥12.00`
    /// in English).
    pub currency: Option<String>,
    /// The WeChat mini-program's AppSecret (its AppID is `wechatpay_appid`): with it set,
    /// shipping an order paid through WeChat Pay JSAPI uploads its shipping information to
    /// WeChat.
    pub wechat_app_secret: Option<String>,
    /// Where WeChat's server API answers (`stable_token`, `upload_shipping_info`).
    pub wechat_api_base_url: String,
    #[serde(default, deserialize_with = "text_or_number")]
    pub wechatpay_mchid: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    pub wechatpay_appid: Option<String>,
    /// Serial number of the merchant API certificate (signs requests).
    #[serde(default, deserialize_with = "text_or_number")]
    pub wechatpay_serial_no: Option<String>,
    pub wechatpay_private_key_path: Option<String>,
    /// The APIv3 key (32 bytes) that decrypts notifications.
    #[serde(default, deserialize_with = "text_or_number")]
    pub wechatpay_api_v3_key: Option<String>,
    pub wechatpay_public_key_path: Option<String>,
    /// `PUB_KEY_ID_…`: the serial WeChat Pay signs its answers and notifications with.
    #[serde(default, deserialize_with = "text_or_number")]
    pub wechatpay_public_key_id: Option<String>,
    pub wechatpay_base_url: String,
    #[serde(default, deserialize_with = "text_or_number")]
    pub alipay_app_id: Option<String>,
    pub alipay_private_key_path: Option<String>,
    pub alipay_public_key_path: Option<String>,
    pub alipay_gateway_url: String,
    pub stripe_secret_key: Option<String>,
    pub stripe_webhook_secret: Option<String>,
    pub stripe_base_url: String,
    /// Where `ordo backup`, `--backup-first` and scheduled snapshots write (SQLite).
    /// Default: `backups` beside the database file.
    pub backup_dir: Option<String>,
    /// Minutes between scheduled snapshots of a SQLite database (0: none).
    pub backup_interval_minutes: u32,
    /// How many scheduled snapshots to keep; older ones are removed.
    pub backup_keep: u32,
}

pub use crate::domain::PaymentProvider;

/// An identifier that a TOML file may write as a number (`wechatpay_mchid = 1900000109`).
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Text(String),
        Number(u64),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::Text(s) => s,
        Text::Number(n) => n.to_string(),
    }))
}

/// Shows a secret as set or not, never its value.
fn secret(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| "<redacted>")
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
            .field(
                "max_pending_orders_per_customer",
                &self.max_pending_orders_per_customer,
            )
            .field("max_units_per_order", &self.max_units_per_order)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field(
                "payment_reminder_lead_minutes",
                &self.payment_reminder_lead_minutes,
            )
            .field("events", &self.events)
            .field("webhook_timeout_seconds", &self.webhook_timeout_seconds)
            .field("webhook_allow_private", &self.webhook_allow_private)
            .field(
                "events_amqp_url",
                &self.events_amqp_url.as_deref().map(redact_url),
            )
            .field("public_url", &self.public_url)
            .field("default_payment_provider", &self.default_payment_provider)
            .field("provider_concurrency", &self.provider_concurrency)
            .field("provider_timeout_seconds", &self.provider_timeout_seconds)
            .field("reconcile_after_minutes", &self.reconcile_after_minutes)
            .field("auto_refund_late_payments", &self.auto_refund_late_payments)
            .field("require_shipping_address", &self.require_shipping_address)
            .field("time_zone", &self.time_zone)
            .field("currency", &self.currency)
            .field("wechat_app_secret", &secret(&self.wechat_app_secret))
            .field("wechat_api_base_url", &self.wechat_api_base_url)
            .field("wechatpay_mchid", &self.wechatpay_mchid)
            .field("wechatpay_appid", &self.wechatpay_appid)
            .field("wechatpay_serial_no", &self.wechatpay_serial_no)
            .field(
                "wechatpay_private_key_path",
                &self.wechatpay_private_key_path,
            )
            .field("wechatpay_api_v3_key", &secret(&self.wechatpay_api_v3_key))
            .field("wechatpay_public_key_path", &self.wechatpay_public_key_path)
            .field("wechatpay_public_key_id", &self.wechatpay_public_key_id)
            .field("wechatpay_base_url", &self.wechatpay_base_url)
            .field("alipay_app_id", &self.alipay_app_id)
            .field("alipay_private_key_path", &self.alipay_private_key_path)
            .field("alipay_public_key_path", &self.alipay_public_key_path)
            .field("alipay_gateway_url", &self.alipay_gateway_url)
            .field("stripe_secret_key", &secret(&self.stripe_secret_key))
            .field(
                "stripe_webhook_secret",
                &secret(&self.stripe_webhook_secret),
            )
            .field("stripe_base_url", &self.stripe_base_url)
            .field("backup_dir", &self.backup_dir)
            .field("backup_interval_minutes", &self.backup_interval_minutes)
            .field("backup_keep", &self.backup_keep)
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
            max_pending_orders_per_customer: 5,
            max_units_per_order: 100,
            rate_limit_per_second: 20,
            rate_limit_burst: 40,
            payment_reminder_lead_minutes: 10,
            events: true,
            webhook_timeout_seconds: 15,
            webhook_allow_private: false,
            events_amqp_url: None,
            public_url: None,
            default_payment_provider: PaymentProvider::Manual,
            provider_concurrency: 32,
            provider_timeout_seconds: 10,
            reconcile_after_minutes: 5,
            auto_refund_late_payments: true,
            require_shipping_address: false,
            time_zone: "UTC".to_owned(),
            currency: None,
            wechat_app_secret: None,
            wechat_api_base_url: "https://api.weixin.qq.com".to_owned(),
            wechatpay_mchid: None,
            wechatpay_appid: None,
            wechatpay_serial_no: None,
            wechatpay_private_key_path: None,
            wechatpay_api_v3_key: None,
            wechatpay_public_key_path: None,
            wechatpay_public_key_id: None,
            wechatpay_base_url: "https://api.mch.weixin.qq.com".to_owned(),
            alipay_app_id: None,
            alipay_private_key_path: None,
            alipay_public_key_path: None,
            alipay_gateway_url: "https://openapi.alipay.com/gateway.do".to_owned(),
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_base_url: "https://api.stripe.com".to_owned(),
            backup_dir: None,
            backup_interval_minutes: 0,
            backup_keep: 24,
        }
    }
}

/// The environment variables ordo reads whose values are numbers, flags or names, besides
/// `ORDO_CONFIG`.
const KEYS: &[&str] = &[
    "payment_ttl_minutes",
    "unpaid_timeout_minutes",
    "sweep_interval_seconds",
    "sweep_batch_size",
    "max_connections",
    "log_format",
    "max_pending_orders_per_customer",
    "max_units_per_order",
    "rate_limit_per_second",
    "rate_limit_burst",
    "payment_reminder_lead_minutes",
    "events",
    "webhook_timeout_seconds",
    "webhook_allow_private",
    "default_payment_provider",
    "provider_concurrency",
    "provider_timeout_seconds",
    "reconcile_after_minutes",
    "auto_refund_late_payments",
    "require_shipping_address",
    "backup_interval_minutes",
    "backup_keep",
];

/// The environment variables whose values are text, taken exactly as written: a merchant
/// id or a key of digits stays text, leading zeros and all.
const TEXT_KEYS: &[&str] = &[
    "database_url",
    "listen",
    "webhook_secret",
    "log",
    "events_amqp_url",
    "public_url",
    "time_zone",
    "currency",
    "wechat_app_secret",
    "wechat_api_base_url",
    "wechatpay_mchid",
    "wechatpay_appid",
    "wechatpay_serial_no",
    "wechatpay_private_key_path",
    "wechatpay_api_v3_key",
    "wechatpay_public_key_path",
    "wechatpay_public_key_id",
    "wechatpay_base_url",
    "alipay_app_id",
    "alipay_private_key_path",
    "alipay_public_key_path",
    "alipay_gateway_url",
    "stripe_secret_key",
    "stripe_webhook_secret",
    "stripe_base_url",
    "backup_dir",
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
        for key in TEXT_KEYS {
            if let Ok(value) = std::env::var(format!("ORDO_{}", key.to_ascii_uppercase())) {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        let settings: Settings = figment
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<()> {
        let (dialect, url) = crate::db::Dialect::from_url(&self.database_url)?;
        if dialect == crate::db::Dialect::Postgres {
            crate::db::hosts::PgTarget::parse(&url)?;
        }
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
        if self.rate_limit_per_second > 0 && self.rate_limit_burst == 0 {
            return Err(Error::Config(
                "rate_limit_burst must be at least 1 when rate_limit_per_second is set".into(),
            ));
        }
        if !(1..=300).contains(&self.webhook_timeout_seconds) {
            return Err(Error::Config(
                "webhook_timeout_seconds must be between 1 and 300".into(),
            ));
        }
        if let Some(url) = &self.events_amqp_url
            && !(url.starts_with("amqp://") || url.starts_with("amqps://"))
        {
            return Err(Error::Config(format!(
                "events_amqp_url must start with amqp:// or amqps:// (got {})",
                redact_url(url)
            )));
        }
        if !(1..=1024).contains(&self.provider_concurrency) {
            return Err(Error::Config(
                "provider_concurrency must be between 1 and 1024".into(),
            ));
        }
        if !(1..=120).contains(&self.provider_timeout_seconds) {
            return Err(Error::Config(
                "provider_timeout_seconds must be between 1 and 120".into(),
            ));
        }
        if self.reconcile_after_minutes == 0 {
            return Err(Error::Config(
                "reconcile_after_minutes must be at least 1".into(),
            ));
        }
        if let Some(url) = &self.public_url {
            crate::payments::check_public_url(url)?;
        }
        self.time_zone()?;
        if let Some(currency) = &self.currency
            && !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(Error::Config(format!(
                "currency {currency:?} must be an ISO 4217 code in capitals, such as CNY"
            )));
        }
        if self.wechat_app_secret.is_some() && self.wechatpay_appid.is_none() {
            return Err(Error::Config(
                "wechat_app_secret is set but wechatpay_appid (the mini-program's AppID) is not"
                    .into(),
            ));
        }
        for (key, url) in [
            ("wechat_api_base_url", &self.wechat_api_base_url),
            ("wechatpay_base_url", &self.wechatpay_base_url),
            ("alipay_gateway_url", &self.alipay_gateway_url),
            ("stripe_base_url", &self.stripe_base_url),
        ] {
            crate::payments::check_base_url(key, url)?;
        }
        if self.backup_keep == 0 {
            return Err(Error::Config(
                "backup_keep must be at least 1 (backup_interval_minutes = 0 turns snapshots off)"
                    .into(),
            ));
        }
        if self.backup_interval_minutes > 0 && dialect == crate::db::Dialect::Postgres {
            return Err(Error::Config(
                "backup_interval_minutes is for SQLite; back up PostgreSQL with pg_dump or \
                 pgBackRest (docs/operations.md), and set it to 0"
                    .into(),
            ));
        }
        const MAX_MINUTES: u32 = 60 * 24 * 365;
        if self.payment_ttl_minutes > MAX_MINUTES
            || self.unpaid_timeout_minutes > MAX_MINUTES
            || self.backup_interval_minutes > MAX_MINUTES
        {
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
            max_pending_orders_per_customer: self.max_pending_orders_per_customer,
            max_units_per_order: self.max_units_per_order,
            payment_reminder_lead_ms: i64::from(self.payment_reminder_lead_minutes) * 60_000,
            events: self.events,
            webhook_allow_private: self.webhook_allow_private,
            default_payment_provider: self.default_payment_provider,
            provider_concurrency: self.provider_concurrency,
            reconcile_after_ms: i64::from(self.reconcile_after_minutes) * 60_000,
            auto_refund_late_payments: self.auto_refund_late_payments,
            require_shipping_address: self.require_shipping_address,
        }
    }

    /// The console's time zone (`time_zone`), checked against the IANA database.
    pub fn time_zone(&self) -> Result<chrono_tz::Tz> {
        self.time_zone.trim().parse::<chrono_tz::Tz>().map_err(|_| {
            Error::Config(format!(
                "time_zone {:?} is not an IANA time zone name, such as Asia/Shanghai or UTC",
                self.time_zone
            ))
        })
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
    fn ids_and_keys_stay_text() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("ordo.toml", "wechatpay_mchid = 1900000109")?;
            jail.set_env("ORDO_WECHATPAY_APPID", "0123456789");
            jail.set_env(
                "ORDO_WECHATPAY_API_V3_KEY",
                "01234567890123456789012345678901",
            );
            jail.set_env("ORDO_WEBHOOK_SECRET", "007");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.wechatpay_mchid.as_deref(), Some("1900000109"));
            assert_eq!(s.wechatpay_appid.as_deref(), Some("0123456789"));
            assert_eq!(
                s.wechatpay_api_v3_key.as_deref(),
                Some("01234567890123456789012345678901")
            );
            assert_eq!(s.webhook_secret.as_deref(), Some("007"));
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
