//! The providers a shop configured, loaded from its settings: every key read and checked
//! when ordo starts (a key file missing or malformed is a configuration error naming it),
//! and `ordo providers check`'s report of what is loaded and what is missing. Secrets are
//! never shown, only whether they are set.

use super::alipay::{Alipay, AlipayConfig};
use super::keys::{PrivateKey, PublicKey};
use super::provider::{Provider, Providers};
use super::stripe::{Stripe, StripeConfig};
use super::wechatpay::{WechatPay, WechatPayConfig};
use crate::Settings;
use crate::domain::PaymentProvider;
use crate::error::{Error, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// What `ordo providers check` says of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderStatus {
    pub provider: PaymentProvider,
    /// Some of its settings are there: it is meant to be used.
    pub configured: bool,
    /// Whether it loaded: every setting there and every key readable.
    pub ready: bool,
    /// Settings present (secrets are never shown, only named).
    pub loaded: Vec<String>,
    pub missing: Vec<String>,
    /// Keys that could not be read, and other problems.
    pub problems: Vec<String>,
}

/// A URL ordo builds notification URLs from: http(s), a host, no query or fragment.
pub fn check_public_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::Config(format!("public_url {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(Error::Config(format!(
            "public_url {url:?} must be an http(s) URL with a host, such as https://shop.example"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::Config(format!(
            "public_url {url:?} must not carry a query or a fragment"
        )));
    }
    Ok(())
}

/// A provider's base URL: http(s) with a host.
pub fn check_base_url(key: &str, url: &str) -> Result<()> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => Ok(()),
        _ => Err(Error::Config(format!(
            "{key} {url:?} must be an http(s) URL with a host"
        ))),
    }
}

/// One provider's settings: (name, value) in the order they are reported.
fn settings_of(
    settings: &Settings,
    provider: PaymentProvider,
) -> Vec<(&'static str, Option<&String>)> {
    match provider {
        PaymentProvider::Wechatpay => vec![
            ("wechatpay_mchid", settings.wechatpay_mchid.as_ref()),
            ("wechatpay_appid", settings.wechatpay_appid.as_ref()),
            ("wechatpay_serial_no", settings.wechatpay_serial_no.as_ref()),
            (
                "wechatpay_private_key_path",
                settings.wechatpay_private_key_path.as_ref(),
            ),
            (
                "wechatpay_api_v3_key",
                settings.wechatpay_api_v3_key.as_ref(),
            ),
            (
                "wechatpay_public_key_path",
                settings.wechatpay_public_key_path.as_ref(),
            ),
            (
                "wechatpay_public_key_id",
                settings.wechatpay_public_key_id.as_ref(),
            ),
        ],
        PaymentProvider::Alipay => vec![
            ("alipay_app_id", settings.alipay_app_id.as_ref()),
            (
                "alipay_private_key_path",
                settings.alipay_private_key_path.as_ref(),
            ),
            (
                "alipay_public_key_path",
                settings.alipay_public_key_path.as_ref(),
            ),
        ],
        PaymentProvider::Stripe => vec![
            ("stripe_secret_key", settings.stripe_secret_key.as_ref()),
            (
                "stripe_webhook_secret",
                settings.stripe_webhook_secret.as_ref(),
            ),
        ],
        PaymentProvider::Manual => Vec::new(),
    }
}

/// Loads one provider whose settings are all there; `Err` lists what is wrong.
fn build(
    settings: &Settings,
    provider: PaymentProvider,
) -> std::result::Result<Arc<dyn Provider>, Vec<String>> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default().trim().to_owned();
    let mut problems = Vec::new();
    let built: Option<Arc<dyn Provider>> = match provider {
        PaymentProvider::Wechatpay => {
            let private_key = PrivateKey::from_file(
                "wechatpay_private_key_path",
                &text(&settings.wechatpay_private_key_path),
            )
            .map_err(|e| problems.push(e.to_string()))
            .ok();
            let public_key = PublicKey::from_file(
                "wechatpay_public_key_path",
                &text(&settings.wechatpay_public_key_path),
            )
            .map_err(|e| problems.push(e.to_string()))
            .ok();
            let api_v3_key: Option<[u8; 32]> = text(&settings.wechatpay_api_v3_key)
                .as_bytes()
                .try_into()
                .map_err(|_| {
                    problems.push("wechatpay_api_v3_key must be exactly 32 characters".to_owned())
                })
                .ok();
            if settings.public_url.is_none() {
                problems.push(
                    "public_url is not set: WeChat Pay needs a notify_url built from it".to_owned(),
                );
            }
            match (private_key, public_key, api_v3_key) {
                (Some(private_key), Some(public_key), Some(api_v3_key)) if problems.is_empty() => {
                    Some(Arc::new(WechatPay::new(WechatPayConfig {
                        mchid: text(&settings.wechatpay_mchid),
                        appid: text(&settings.wechatpay_appid),
                        serial_no: text(&settings.wechatpay_serial_no),
                        private_key,
                        api_v3_key,
                        public_key,
                        public_key_id: text(&settings.wechatpay_public_key_id),
                        base_url: settings.wechatpay_base_url.clone(),
                    })))
                }
                _ => None,
            }
        }
        PaymentProvider::Alipay => {
            let private_key = PrivateKey::from_file(
                "alipay_private_key_path",
                &text(&settings.alipay_private_key_path),
            )
            .map_err(|e| problems.push(e.to_string()))
            .ok();
            let public_key = PublicKey::from_file(
                "alipay_public_key_path",
                &text(&settings.alipay_public_key_path),
            )
            .map_err(|e| problems.push(e.to_string()))
            .ok();
            if settings.public_url.is_none() {
                problems.push(
                    "public_url is not set: Alipay needs a notify_url built from it".to_owned(),
                );
            }
            match (private_key, public_key) {
                (Some(private_key), Some(alipay_public_key)) if problems.is_empty() => {
                    Some(Arc::new(Alipay::new(AlipayConfig {
                        app_id: text(&settings.alipay_app_id),
                        private_key,
                        alipay_public_key,
                        gateway_url: settings.alipay_gateway_url.clone(),
                    })))
                }
                _ => None,
            }
        }
        PaymentProvider::Stripe => {
            let secret_key = text(&settings.stripe_secret_key);
            let webhook_secret = text(&settings.stripe_webhook_secret);
            if !(secret_key.starts_with("sk_") || secret_key.starts_with("rk_")) {
                problems.push("stripe_secret_key must start with sk_ or rk_".to_owned());
            }
            if !webhook_secret.starts_with("whsec_") {
                problems.push("stripe_webhook_secret must start with whsec_".to_owned());
            }
            problems.is_empty().then(|| {
                Arc::new(Stripe::new(StripeConfig {
                    secret_key,
                    webhook_secret,
                    base_url: settings.stripe_base_url.clone(),
                })) as Arc<dyn Provider>
            })
        }
        PaymentProvider::Manual => None,
    };
    built.ok_or(problems)
}

/// What `ordo providers check` reports: every provider, configured or not.
pub fn report(settings: &Settings) -> Vec<ProviderStatus> {
    PaymentProvider::ALL
        .into_iter()
        .map(|provider| {
            if provider == PaymentProvider::Manual {
                let secret = vec!["webhook_secret".to_owned()];
                let (loaded, missing) = if settings.webhook_secret.is_some() {
                    (secret, Vec::new())
                } else {
                    (Vec::new(), secret)
                };
                return ProviderStatus {
                    provider,
                    configured: true,
                    ready: missing.is_empty(),
                    loaded,
                    missing,
                    problems: Vec::new(),
                };
            }
            let values = settings_of(settings, provider);
            let mut loaded: Vec<String> = values
                .iter()
                .filter(|(_, v)| v.is_some_and(|v| !v.trim().is_empty()))
                .map(|(k, _)| (*k).to_owned())
                .collect();
            let missing: Vec<String> = values
                .iter()
                .filter(|(_, v)| !v.is_some_and(|v| !v.trim().is_empty()))
                .map(|(k, _)| (*k).to_owned())
                .collect();
            let configured = !loaded.is_empty();
            // Optional: shipments of WeChat Pay orders reported to WeChat.
            if provider == PaymentProvider::Wechatpay && settings.wechat_app_secret.is_some() {
                loaded.push("wechat_app_secret (shipments reported to WeChat)".to_owned());
            }
            let problems = if configured && missing.is_empty() {
                build(settings, provider).err().unwrap_or_default()
            } else {
                Vec::new()
            };
            ProviderStatus {
                provider,
                configured,
                ready: configured && missing.is_empty() && problems.is_empty(),
                loaded,
                missing,
                problems,
            }
        })
        .collect()
}

/// The providers the settings configure, loaded. A provider partly configured, a key that
/// cannot be read, or a default provider that is not configured, is a configuration error
/// that names the setting.
pub fn load_providers(settings: &Settings, clock: crate::Clock) -> Result<Providers> {
    let mut configured: Vec<Arc<dyn Provider>> = Vec::new();
    for status in report(settings) {
        if status.provider == PaymentProvider::Manual || !status.configured {
            continue;
        }
        if !status.missing.is_empty() {
            return Err(Error::Config(format!(
                "{} is configured in part: missing {}",
                status.provider,
                status.missing.join(", ")
            )));
        }
        match build(settings, status.provider) {
            Ok(provider) => configured.push(provider),
            Err(problems) => return Err(Error::Config(problems.join("; "))),
        }
    }
    let default = settings.default_payment_provider;
    if default != PaymentProvider::Manual && !configured.iter().any(|p| p.kind() == default) {
        return Err(Error::Config(format!(
            "default_payment_provider is {default}, which is not configured"
        )));
    }
    let providers = Providers::new(
        configured,
        settings.public_url.clone(),
        settings.provider_concurrency,
        Duration::from_secs(settings.provider_timeout_seconds),
        clock,
    );
    Ok(
        match (&settings.wechat_app_secret, &settings.wechatpay_appid) {
            (Some(secret), Some(appid)) => providers.with_shipping(
                super::shipping::WechatShipping::new(super::shipping::WechatShippingConfig {
                    appid: appid.clone(),
                    secret: secret.clone(),
                    base_url: settings.wechat_api_base_url.clone(),
                    mchid: settings.wechatpay_mchid.clone(),
                }),
            ),
            (Some(_), None) => {
                return Err(Error::Config(
                "wechat_app_secret is set but wechatpay_appid (the mini-program's AppID) is not"
                    .to_owned(),
            ));
            }
            _ => providers,
        },
    )
}
