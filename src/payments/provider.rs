//! The one interface every payment provider implements (open, query, close, refund, read a
//! notification), and [`Providers`]: the configured providers behind the one gate every
//! provider call goes through, whoever makes it (a customer opening a payment, the sweep,
//! the reconciliation job, staff). The gate bounds how many calls are in flight
//! (`provider_concurrency`) and how long each may take, counts every call in
//! `ordo_provider_requests_total{provider,operation,outcome}` and times it. Nothing here
//! touches the database: callers make provider calls between transactions, never inside one.

use crate::domain::{Millis, Order, Payment, PaymentProvider};
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What a provider call is for (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Open,
    Query,
    Close,
    Refund,
    RefundQuery,
    /// WeChat's server API: an access token (`stable_token`).
    AccessToken,
    /// WeChat's server API: `upload_shipping_info`.
    UploadShipping,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::Open,
        Operation::Query,
        Operation::Close,
        Operation::Refund,
        Operation::RefundQuery,
        Operation::AccessToken,
        Operation::UploadShipping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::Query => "query",
            Operation::Close => "close",
            Operation::Refund => "refund",
            Operation::RefundQuery => "refund_query",
            Operation::AccessToken => "stable_token",
            Operation::UploadShipping => "upload_shipping_info",
        }
    }
}

/// Why a provider call gave no answer ordo can act on. None of these is a fact about the
/// payment: the work that needed the answer waits and is tried again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No answer: refused connection, timeout, a broken exchange, or a server error the
    /// provider itself says to retry.
    #[error("{provider} unreachable: {detail}")]
    Unreachable {
        provider: PaymentProvider,
        detail: String,
    },
    /// The provider answered with an error of its own.
    #[error("{provider} answered an error: {detail}")]
    Erring {
        provider: PaymentProvider,
        detail: String,
    },
    /// An answer whose signature does not verify, or that says something it cannot (another
    /// merchant's payment, a different amount): never believed.
    #[error("{provider} answer not trusted: {detail}")]
    Unverifiable {
        provider: PaymentProvider,
        detail: String,
    },
    /// This provider has no such operation (`manual` payments are not asked about).
    #[error("{provider} cannot {operation}")]
    Unsupported {
        provider: PaymentProvider,
        operation: &'static str,
    },
}

impl ProviderError {
    /// The metric label of the failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            ProviderError::Unreachable { .. } => "unreachable",
            ProviderError::Erring { .. } | ProviderError::Unsupported { .. } => "error",
            ProviderError::Unverifiable { .. } => "unverifiable",
        }
    }
}

/// Opening a payment at the provider.
#[derive(Debug, Clone)]
pub struct OpenRequest<'a> {
    pub payment: &'a Payment,
    pub order: &'a Order,
    /// What the customer sees the payment is for.
    pub description: String,
    /// The WeChat payer (JSAPI).
    pub openid: Option<&'a str>,
    /// Where the provider sends its notifications.
    pub notify_url: Option<String>,
}

/// A payment the provider opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The provider's reference: out_trade_no (WeChat Pay, Alipay), PaymentIntent id (Stripe).
    pub provider_ref: String,
    /// What the front end needs, as stored (see [`Provider::client`]).
    pub client: Value,
    /// The provider's word for the new transaction's state.
    pub state: String,
}

/// What the provider says of a payment's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnState {
    /// Paid: the money was taken (perhaps refunded since, which is still money taken).
    Paid {
        txn_id: String,
        /// In the provider's minor units (fen, cents).
        amount_minor: i64,
        /// Upper case ISO 4217.
        currency: String,
        state: String,
    },
    /// Open and unpaid: it can still be paid until it is closed.
    Unpaid { state: String },
    /// The customer is paying right now (WeChat `USERPAYING`, Stripe `processing`): neither
    /// paid nor closable yet.
    Paying { state: String },
    /// Closed, failed or cancelled at the provider: it can no longer be paid.
    Closed { state: String },
    /// The provider has no such transaction (never created, or for Alipay's QR code never
    /// scanned).
    Missing,
}

impl TxnState {
    pub fn label(&self) -> String {
        match self {
            TxnState::Paid { state, .. }
            | TxnState::Unpaid { state }
            | TxnState::Paying { state }
            | TxnState::Closed { state } => state.clone(),
            TxnState::Missing => "NOT_FOUND".to_owned(),
        }
    }
}

/// What asking the provider to close a transaction came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Closed (or already closed, or never created): it cannot be paid any more.
    Closed,
    /// The provider refused because it was paid meanwhile.
    AlreadyPaid,
}

/// A refund to ask for (always the whole payment).
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    pub payment: &'a Payment,
    pub currency: &'a str,
    /// Idempotent at the provider: the same number never refunds twice.
    pub out_refund_no: &'a str,
    pub reason: &'a str,
    pub notify_url: Option<String>,
}

/// Where a refund stands at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Succeeded {
        refund_id: String,
    },
    Processing {
        refund_id: String,
    },
    /// The provider said no. `final_at_provider`: the refund exists there and failed, so
    /// another try needs a new refund number; otherwise the same number may be sent again.
    Refused {
        reason: String,
        final_at_provider: bool,
    },
    /// The provider knows no refund by that number (it never arrived): send it again.
    NotFound,
}

/// A notification, verified and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The provider's id of this notification: each is applied at most once.
    pub event_id: String,
    pub kind: NotificationKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationKind {
    PaymentSucceeded {
        /// The payment's `provider_ref`.
        provider_ref: String,
        txn_id: String,
        amount_minor: i64,
        currency: String,
        state: String,
        /// The WeChat payer's openid.
        payer: Option<String>,
    },
    PaymentFailed {
        provider_ref: String,
        state: String,
    },
    RefundSucceeded {
        refund: RefundRef,
        refund_id: Option<String>,
    },
    RefundFailed {
        refund: RefundRef,
        reason: String,
    },
    /// Verified, but about nothing ordo acts on: acknowledged and left alone.
    Ignored {
        what: String,
    },
}

/// Which refund a notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRef {
    /// By the number ordo gave it (WeChat Pay, Alipay).
    OutRefundNo(String),
    /// By its payment's `provider_ref` (Stripe: the PaymentIntent).
    Payment(String),
}

/// Why a notification was refused (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The signature, its key, or its timestamp does not check out.
    #[error("not authentic: {0}")]
    NotAuthentic(String),
    /// Not what the provider sends (not JSON, fields missing, cannot be decrypted).
    #[error("malformed: {0}")]
    Malformed(String),
    /// Authentic, but not about what ordo asked for: another merchant or app, another
    /// amount or currency, a payment ordo does not know.
    #[error("does not match: {0}")]
    Mismatch(String),
    /// ordo could not take it now (the database): the provider should send it again.
    #[error("not now: {0}")]
    Unavailable(String),
    /// This provider is not configured here.
    #[error("{0} is not configured")]
    NotConfigured(PaymentProvider),
}

/// The answer a notification gets, in the provider's own convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Acknowledgement {
    pub fn json(status: u16, body: Value) -> Acknowledgement {
        Acknowledgement {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    pub fn text(status: u16, body: &str) -> Acknowledgement {
        Acknowledgement {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }
}

/// What provider calls share: the outbound HTTP client (no redirects followed) and the
/// clock that answers' timestamps are checked against.
#[derive(Debug, Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub clock: crate::Clock,
}

impl Http {
    pub fn now(&self) -> Millis {
        self.clock.now()
    }
}

/// One payment provider. A new provider is one file that implements this.
pub trait Provider: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> PaymentProvider;

    /// Opens a payment at the provider: a transaction that expires with the payment.
    fn open<'a>(
        &'a self,
        http: &'a Http,
        request: OpenRequest<'a>,
    ) -> BoxFuture<'a, Result<Opened, ProviderError>>;

    /// What the front end gets from what [`Provider::open`] stored (WeChat Pay signs
    /// `wx.requestPayment`'s parameters afresh each time).
    fn client(&self, stored: &Value, _now: Millis) -> Value {
        stored.clone()
    }

    fn query<'a>(
        &'a self,
        http: &'a Http,
        payment: &'a Payment,
    ) -> BoxFuture<'a, Result<TxnState, ProviderError>>;

    fn close<'a>(
        &'a self,
        http: &'a Http,
        payment: &'a Payment,
    ) -> BoxFuture<'a, Result<CloseOutcome, ProviderError>>;

    fn refund<'a>(
        &'a self,
        http: &'a Http,
        request: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>>;

    fn query_refund<'a>(
        &'a self,
        http: &'a Http,
        request: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>>;

    /// Verifies a notification (first, before anything in it is read) and reads it.
    fn read_notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Millis,
    ) -> Result<Notification, Refusal>;

    /// The answer to a notification, in the provider's convention.
    fn acknowledge(&self, result: Result<(), &Refusal>) -> Acknowledgement;
}

/// The configured providers and the gate to them.
#[derive(Clone)]
pub struct Providers {
    providers: HashMap<PaymentProvider, Arc<dyn Provider>>,
    http: Http,
    permits: Arc<Semaphore>,
    concurrency: usize,
    timeout: Duration,
    public_url: Option<String>,
    /// WeChat's shipping information service (with `wechat_app_secret` set).
    shipping: Option<Arc<super::shipping::WechatShipping>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.providers.keys().map(|p| p.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("Providers")
            .field("configured", &names)
            .field("public_url", &self.public_url)
            .field("shipping", &self.shipping.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Providers {
    fn default() -> Self {
        Providers::new(
            Vec::new(),
            None,
            32,
            Duration::from_secs(10),
            crate::Clock::system(),
        )
    }
}

impl Providers {
    /// `manual` is always there; `configured` adds the others.
    pub fn new(
        configured: Vec<Arc<dyn Provider>>,
        public_url: Option<String>,
        concurrency: u32,
        timeout: Duration,
        clock: crate::Clock,
    ) -> Providers {
        crate::install_tls_provider();
        let mut providers: HashMap<PaymentProvider, Arc<dyn Provider>> = HashMap::new();
        providers.insert(
            PaymentProvider::Manual,
            Arc::new(super::manual::Manual) as Arc<dyn Provider>,
        );
        for provider in configured {
            providers.insert(provider.kind(), provider);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("ordo/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let http = Http { client, clock };
        Providers {
            providers,
            http,
            permits: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            concurrency: concurrency.max(1) as usize,
            timeout,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            shipping: None,
        }
    }

    /// The same providers, with WeChat's shipping information service.
    pub fn with_shipping(mut self, shipping: super::shipping::WechatShipping) -> Providers {
        self.shipping = Some(Arc::new(shipping));
        self
    }

    /// WeChat's shipping information service, if the shop uses it.
    pub fn shipping(&self) -> Option<&Arc<super::shipping::WechatShipping>> {
        self.shipping.as_ref()
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    /// How long one provider call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn get(&self, kind: PaymentProvider) -> Option<&Arc<dyn Provider>> {
        self.providers.get(&kind)
    }

    pub fn is_configured(&self, kind: PaymentProvider) -> bool {
        self.providers.contains_key(&kind)
    }

    /// Most calls in flight at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Where `kind` sends its notifications, from `public_url`.
    pub fn notify_url(&self, kind: PaymentProvider) -> Option<String> {
        let base = self.public_url.as_deref()?;
        Some(match kind {
            PaymentProvider::Manual => format!("{base}/api/v1/payments/webhook"),
            PaymentProvider::Wechatpay => format!("{base}/api/v1/payments/wechatpay/notify"),
            PaymentProvider::Alipay => format!("{base}/api/v1/payments/alipay/notify"),
            PaymentProvider::Stripe => format!("{base}/api/v1/payments/stripe/webhook"),
        })
    }

    /// Every provider call goes through here: one permit of `provider_concurrency`, the
    /// time limit, the metrics and the log line of a failure.
    pub async fn call<'a, T>(
        &'a self,
        kind: PaymentProvider,
        operation: Operation,
        call: impl FnOnce(&'a dyn Provider, &'a Http) -> BoxFuture<'a, Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let provider = self.providers.get(&kind).ok_or(ProviderError::Erring {
            provider: kind,
            detail: "not configured in this process".to_owned(),
        })?;
        self.gated(
            kind,
            kind.as_str(),
            operation,
            call(provider.as_ref(), &self.http),
        )
        .await
    }

    /// The gate itself: one permit of `provider_concurrency`, the time limit, the metrics
    /// (`service` is the `provider` label) and the log line of a failure. Calls to WeChat's
    /// server API (the shipping information) go through it too.
    pub(crate) async fn gated<T>(
        &self,
        kind: PaymentProvider,
        service: &'static str,
        operation: Operation,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ProviderError::Unreachable {
                provider: kind,
                detail: "shutting down".to_owned(),
            })?;
        let started = Instant::now();
        // The client's own timeout bounds each exchange; this bounds the whole call.
        let answer = match tokio::time::timeout(self.timeout + Duration::from_secs(1), call).await {
            Ok(answer) => answer,
            Err(_) => Err(ProviderError::Unreachable {
                provider: kind,
                detail: format!("no answer within {} s", self.timeout.as_secs()),
            }),
        };
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(err) => err.outcome(),
        };
        metrics::counter!("ordo_provider_requests_total",
            "provider" => service, "operation" => operation.as_str(), "outcome" => outcome)
        .increment(1);
        metrics::histogram!("ordo_provider_request_duration_seconds",
            "provider" => service, "operation" => operation.as_str())
        .record(started.elapsed().as_secs_f64());
        if let Err(err) = &answer {
            tracing::warn!(provider = service, operation = operation.as_str(), error = %err, "provider call failed");
        }
        answer
    }
}

/// The transport failure of a request, as a provider error.
pub fn unreachable(provider: PaymentProvider, err: &reqwest::Error) -> ProviderError {
    // reqwest's message names the URL, which holds no secret (keys travel in headers).
    let detail = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "could not connect".to_owned()
    } else {
        "the exchange broke off".to_owned()
    };
    ProviderError::Unreachable { provider, detail }
}

/// At most this much of a provider's answer is read: answers are small JSON documents.
pub const MAX_ANSWER: usize = 1 << 20;

/// The status, headers and body of an answer, read up to [`MAX_ANSWER`].
pub async fn read_answer(
    provider: PaymentProvider,
    response: reqwest::Response,
) -> Result<(u16, HeaderMap, Vec<u8>), ProviderError> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if response.content_length().unwrap_or(0) > MAX_ANSWER as u64 {
        return Err(ProviderError::Unverifiable {
            provider,
            detail: "an answer larger than 1 MiB".to_owned(),
        });
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unreachable(provider, &e))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(ProviderError::Unverifiable {
                provider,
                detail: "an answer larger than 1 MiB".to_owned(),
            });
        }
    }
    Ok((status, headers, body))
}

/// The start of an answer's body, for an error message (never a whole document).
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    text
}

/// A random string of letters and digits (request nonces).
pub fn nonce(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `ms` as China Standard Time (UTC+8, no daylight saving), which WeChat Pay and Alipay
/// read their times in.
pub fn china_time(ms: Millis) -> chrono::DateTime<chrono::FixedOffset> {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&offset)
}

/// A header's value as text, if present and readable.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The answer to a notification for a provider this shop has not configured, in that
/// provider's convention: with no key to check it with, nothing can make it authentic.
pub fn not_configured(kind: PaymentProvider) -> Acknowledgement {
    let message = format!("{kind} is not configured on this shop: nothing can be verified");
    match kind {
        PaymentProvider::Wechatpay => {
            Acknowledgement::json(401, serde_json::json!({"code": "FAIL", "message": message}))
        }
        PaymentProvider::Alipay => Acknowledgement::text(401, "fail"),
        PaymentProvider::Stripe | PaymentProvider::Manual => {
            Acknowledgement::json(401, serde_json::json!({"error": message}))
        }
    }
}

/// The out_trade_no ordo gave a provider for `payment` (WeChat Pay, Alipay).
pub fn out_trade_no(kind: PaymentProvider, payment: &Payment) -> Result<&str, ProviderError> {
    payment
        .merchant_ref
        .as_deref()
        .or(payment.provider_ref.as_deref())
        .ok_or(ProviderError::Erring {
            provider: kind,
            detail: "the payment has no out_trade_no".to_owned(),
        })
}
