//! Stripe PaymentIntents, spoken as raw HTTP: form-encoded requests with the secret key as
//! a bearer token, an `Idempotency-Key` on every POST (a retry never creates a second
//! PaymentIntent or refund). Stripe's answers come over TLS and carry no signature; its
//! webhooks are signed (`Stripe-Signature: t=…,v1=…`, HMAC-SHA256 of `"{t}.{body}"` keyed
//! with the whole `whsec_…` secret) and refused more than five minutes from ordo's clock.

use super::provider::{
    Acknowledgement, CloseOutcome, Http, Notification, NotificationKind, OpenRequest, Opened,
    Provider, ProviderError, RefundOutcome, RefundRef, RefundRequest, Refusal, TxnState, header,
    read_answer, unreachable,
};
use crate::domain::{Millis, Payment, PaymentProvider};
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};

const KIND: PaymentProvider = PaymentProvider::Stripe;
const TOLERANCE_SECONDS: i64 = 300;

#[derive(Clone)]
pub struct StripeConfig {
    pub secret_key: String,
    pub webhook_secret: String,
    pub base_url: String,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Stripe {
    config: StripeConfig,
}

#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    #[serde(default)]
    amount: i64,
    #[serde(default)]
    amount_received: i64,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    latest_charge: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RefundObject {
    id: String,
    status: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
    #[serde(default)]
    payment_intent: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorObject>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorObject {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    payment_intent: Option<PaymentIntent>,
}

/// An id given as a string or as an expanded object.
fn id_of(value: &Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Object(object)) => object.get("id").and_then(|v| v.as_str()).map(str::to_owned),
        _ => None,
    }
}

impl PaymentIntent {
    fn state(self) -> TxnState {
        let state = self.status.clone();
        match state.as_str() {
            "succeeded" => TxnState::Paid {
                txn_id: id_of(&self.latest_charge).unwrap_or(self.id),
                amount_minor: self.amount_received.max(self.amount),
                currency: self.currency.to_ascii_uppercase(),
                state,
            },
            "processing" | "requires_capture" => TxnState::Paying { state },
            "canceled" => TxnState::Closed { state },
            _ => TxnState::Unpaid { state },
        }
    }
}

impl Stripe {
    pub fn new(config: StripeConfig) -> Stripe {
        Stripe { config }
    }

    async fn send(
        &self,
        http: &Http,
        method: reqwest::Method,
        path: &str,
        form: Option<(&[(&str, String)], &str)>,
    ) -> Result<(u16, Vec<u8>), ProviderError> {
        let mut request = http
            .client
            .request(
                method,
                format!("{}{path}", self.config.base_url.trim_end_matches('/')),
            )
            .bearer_auth(&self.config.secret_key);
        if let Some((fields, idempotency_key)) = form {
            let mut body = form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                body.append_pair(k, v);
            }
            request = request
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Idempotency-Key", idempotency_key)
                .body(body.finish());
        }
        let response = request.send().await.map_err(|e| unreachable(KIND, &e))?;
        let (status, headers, body) = read_answer(KIND, response).await?;
        let retry = header(&headers, "stripe-should-retry");
        if status >= 500 || status == 409 || (status == 429 && retry == Some("true")) {
            return Err(ProviderError::Unreachable {
                provider: KIND,
                detail: format!("HTTP {status}"),
            });
        }
        Ok((status, body))
    }

    fn error(status: u16, body: &[u8]) -> (ErrorObject, ProviderError) {
        let error = serde_json::from_slice::<ErrorEnvelope>(body)
            .unwrap_or_default()
            .error
            .unwrap_or_default();
        let detail = format!(
            "HTTP {status} {} {} {}",
            error.kind.as_deref().unwrap_or_default(),
            error.code.as_deref().unwrap_or_default(),
            error
                .message
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        );
        (
            error,
            ProviderError::Erring {
                provider: KIND,
                detail,
            },
        )
    }

    fn intent(body: &[u8]) -> Result<PaymentIntent, ProviderError> {
        serde_json::from_slice(body).map_err(|e| ProviderError::Unverifiable {
            provider: KIND,
            detail: format!("an unreadable PaymentIntent: {e}"),
        })
    }

    fn intent_id(payment: &Payment) -> Result<&str, ProviderError> {
        payment
            .provider_ref
            .as_deref()
            .filter(|r| r.starts_with("pi_"))
            .ok_or(ProviderError::Erring {
                provider: KIND,
                detail: "the payment has no PaymentIntent".to_owned(),
            })
    }

    fn refund_outcome(refund: RefundObject) -> RefundOutcome {
        match refund.status.as_deref().unwrap_or_default() {
            "succeeded" => RefundOutcome::Succeeded {
                refund_id: refund.id,
            },
            "failed" | "canceled" => RefundOutcome::Refused {
                reason: format!(
                    "Stripe: refund {} ({})",
                    refund.status.unwrap_or_default(),
                    refund.failure_reason.unwrap_or_default()
                ),
                final_at_provider: true,
            },
            _ => RefundOutcome::Processing {
                refund_id: refund.id,
            },
        }
    }

    /// Checks `Stripe-Signature` against the raw body, in constant time.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: Millis) -> Result<(), String> {
        let signature = header(headers, "stripe-signature").ok_or("no Stripe-Signature")?;
        let mut timestamp = None;
        let mut candidates = Vec::new();
        for item in signature.split(',') {
            let (key, value) = item.split_once('=').ok_or("a malformed Stripe-Signature")?;
            match key.trim() {
                "t" => timestamp = value.trim().parse::<i64>().ok(),
                "v1" => {
                    if let Ok(bytes) = hex::decode(value.trim()) {
                        candidates.push(bytes);
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or("no timestamp in Stripe-Signature")?;
        if (now.div_euclid(1000) - timestamp).abs() > TOLERANCE_SECONDS {
            return Err("the Stripe-Signature timestamp is more than 5 minutes away".to_owned());
        }
        let good = candidates.iter().any(|candidate| {
            let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(
                self.config.webhook_secret.as_bytes(),
            )
            .expect("HMAC takes keys of any length");
            mac.update(format!("{timestamp}.").as_bytes());
            mac.update(body);
            mac.verify_slice(candidate).is_ok()
        });
        if !good {
            return Err("no v1 signature verifies".to_owned());
        }
        Ok(())
    }
}

/// The `Stripe-Signature` header for `body` at `timestamp` (what Stripe sends; test doubles
/// sign with it).
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

impl Provider for Stripe {
    fn kind(&self) -> PaymentProvider {
        KIND
    }

    fn open<'a>(
        &'a self,
        http: &'a Http,
        request: OpenRequest<'a>,
    ) -> BoxFuture<'a, Result<Opened, ProviderError>> {
        Box::pin(async move {
            let reference = request
                .payment
                .merchant_ref
                .clone()
                .ok_or(ProviderError::Erring {
                    provider: KIND,
                    detail: "the payment has no reference".to_owned(),
                })?;
            let fields = [
                ("amount", request.payment.amount_cents.to_string()),
                ("currency", request.order.currency.to_ascii_lowercase()),
                ("description", request.description.clone()),
                ("automatic_payment_methods[enabled]", "true".to_owned()),
                ("metadata[ordo_payment]", reference.clone()),
                ("metadata[order_number]", request.order.number.clone()),
            ];
            let (status, body) = self
                .send(
                    http,
                    reqwest::Method::POST,
                    "/v1/payment_intents",
                    Some((&fields, &reference)),
                )
                .await?;
            if !(200..300).contains(&status) {
                return Err(Self::error(status, &body).1);
            }
            let intent = Self::intent(&body)?;
            let client_secret = intent.client_secret.ok_or(ProviderError::Unverifiable {
                provider: KIND,
                detail: "a PaymentIntent without client_secret".to_owned(),
            })?;
            Ok(Opened {
                provider_ref: intent.id,
                client: json!({"client_secret": client_secret}),
                state: intent.status,
            })
        })
    }

    fn query<'a>(
        &'a self,
        http: &'a Http,
        payment: &'a Payment,
    ) -> BoxFuture<'a, Result<TxnState, ProviderError>> {
        Box::pin(async move {
            let id = Self::intent_id(payment)?;
            let (status, body) = self
                .send(
                    http,
                    reqwest::Method::GET,
                    &format!("/v1/payment_intents/{id}"),
                    None,
                )
                .await?;
            if status == 404 {
                return Ok(TxnState::Missing);
            }
            if !(200..300).contains(&status) {
                return Err(Self::error(status, &body).1);
            }
            let intent = Self::intent(&body)?;
            if intent.id != id {
                return Err(ProviderError::Unverifiable {
                    provider: KIND,
                    detail: format!("asked for {id}, answered about {}", intent.id),
                });
            }
            Ok(intent.state())
        })
    }

    fn close<'a>(
        &'a self,
        http: &'a Http,
        payment: &'a Payment,
    ) -> BoxFuture<'a, Result<CloseOutcome, ProviderError>> {
        Box::pin(async move {
            let id = Self::intent_id(payment)?;
            let fields = [("cancellation_reason", "abandoned".to_owned())];
            let key = format!("{id}-cancel");
            let (status, body) = self
                .send(
                    http,
                    reqwest::Method::POST,
                    &format!("/v1/payment_intents/{id}/cancel"),
                    Some((&fields, &key)),
                )
                .await?;
            if (200..300).contains(&status) {
                return match Self::intent(&body)?.status.as_str() {
                    "canceled" => Ok(CloseOutcome::Closed),
                    other => Err(ProviderError::Erring {
                        provider: KIND,
                        detail: format!("cancelled, yet {other}"),
                    }),
                };
            }
            let (error, err) = Self::error(status, &body);
            if error.code.as_deref() == Some("payment_intent_unexpected_state") {
                match error.payment_intent.map(|pi| pi.status).as_deref() {
                    Some("succeeded") => return Ok(CloseOutcome::AlreadyPaid),
                    Some("canceled") => return Ok(CloseOutcome::Closed),
                    _ => {}
                }
            }
            Err(err)
        })
    }

    fn refund<'a>(
        &'a self,
        http: &'a Http,
        request: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            let id = Self::intent_id(request.payment)?;
            let fields = [
                ("payment_intent", id.to_owned()),
                ("amount", request.payment.amount_cents.to_string()),
                ("metadata[ordo_refund]", request.out_refund_no.to_owned()),
            ];
            let (status, body) = self
                .send(
                    http,
                    reqwest::Method::POST,
                    "/v1/refunds",
                    Some((&fields, request.out_refund_no)),
                )
                .await?;
            if !(200..300).contains(&status) {
                let (error, err) = Self::error(status, &body);
                return match status {
                    400 | 402 => Ok(RefundOutcome::Refused {
                        reason: format!(
                            "Stripe: {} {}",
                            error.code.unwrap_or_default(),
                            error.message.unwrap_or_default()
                        ),
                        final_at_provider: false,
                    }),
                    _ => Err(err),
                };
            }
            let refund: RefundObject =
                serde_json::from_slice(&body).map_err(|e| ProviderError::Unverifiable {
                    provider: KIND,
                    detail: format!("an unreadable refund: {e}"),
                })?;
            Ok(Self::refund_outcome(refund))
        })
    }

    fn query_refund<'a>(
        &'a self,
        http: &'a Http,
        request: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            let Some(refund_id) = request.payment.refund_ref.as_deref() else {
                return Ok(RefundOutcome::NotFound);
            };
            let (status, body) = self
                .send(
                    http,
                    reqwest::Method::GET,
                    &format!("/v1/refunds/{refund_id}"),
                    None,
                )
                .await?;
            if status == 404 {
                return Ok(RefundOutcome::NotFound);
            }
            if !(200..300).contains(&status) {
                return Err(Self::error(status, &body).1);
            }
            let refund: RefundObject =
                serde_json::from_slice(&body).map_err(|e| ProviderError::Unverifiable {
                    provider: KIND,
                    detail: format!("an unreadable refund: {e}"),
                })?;
            Ok(Self::refund_outcome(refund))
        })
    }

    fn read_notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Millis,
    ) -> Result<Notification, Refusal> {
        self.verify(headers, body, now)
            .map_err(Refusal::NotAuthentic)?;
        #[derive(Deserialize)]
        struct Event {
            id: String,
            #[serde(rename = "type")]
            kind: String,
            data: EventData,
        }
        #[derive(Deserialize)]
        struct EventData {
            object: Value,
        }
        let event: Event = serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("not a Stripe event: {e}")))?;
        let object = event.data.object;
        let malformed = |e: serde_json::Error| Refusal::Malformed(format!("data.object: {e}"));
        let kind = match event.kind.as_str() {
            "payment_intent.succeeded" => {
                let intent: PaymentIntent = serde_json::from_value(object).map_err(malformed)?;
                let provider_ref = intent.id.clone();
                match intent.state() {
                    TxnState::Paid {
                        txn_id,
                        amount_minor,
                        currency,
                        state,
                    } => NotificationKind::PaymentSucceeded {
                        provider_ref,
                        txn_id,
                        amount_minor,
                        currency,
                        state,
                        payer: None,
                    },
                    other => {
                        return Err(Refusal::Malformed(format!(
                            "payment_intent.succeeded with status {}",
                            other.label()
                        )));
                    }
                }
            }
            "payment_intent.payment_failed" => {
                let intent: PaymentIntent = serde_json::from_value(object).map_err(malformed)?;
                NotificationKind::PaymentFailed {
                    provider_ref: intent.id,
                    state: intent.status,
                }
            }
            "charge.refunded" => {
                #[derive(Deserialize)]
                struct Charge {
                    #[serde(default)]
                    payment_intent: Option<Value>,
                    #[serde(default)]
                    refunded: bool,
                }
                let charge: Charge = serde_json::from_value(object).map_err(malformed)?;
                match (id_of(&charge.payment_intent), charge.refunded) {
                    (Some(intent), true) => NotificationKind::RefundSucceeded {
                        refund: RefundRef::Payment(intent),
                        refund_id: None,
                    },
                    _ => NotificationKind::Ignored {
                        what: "charge.refunded, in part".to_owned(),
                    },
                }
            }
            "refund.updated" | "refund.failed" => {
                let refund: RefundObject = serde_json::from_value(object).map_err(malformed)?;
                let intent = id_of(&refund.payment_intent);
                match (Self::refund_outcome(refund), intent) {
                    (RefundOutcome::Refused { reason, .. }, Some(intent)) => {
                        NotificationKind::RefundFailed {
                            refund: RefundRef::Payment(intent),
                            reason,
                        }
                    }
                    (RefundOutcome::Succeeded { refund_id }, Some(intent)) => {
                        NotificationKind::RefundSucceeded {
                            refund: RefundRef::Payment(intent),
                            refund_id: Some(refund_id),
                        }
                    }
                    _ => NotificationKind::Ignored {
                        what: event.kind.clone(),
                    },
                }
            }
            other => NotificationKind::Ignored {
                what: other.to_owned(),
            },
        };
        Ok(Notification {
            event_id: event.id,
            kind,
        })
    }

    fn acknowledge(&self, result: Result<(), &Refusal>) -> Acknowledgement {
        match result {
            Ok(()) => Acknowledgement::json(200, json!({"received": true})),
            Err(refusal) => {
                let status = match refusal {
                    Refusal::Unavailable(_) => 503,
                    Refusal::NotAuthentic(_) | Refusal::NotConfigured(_) => 401,
                    _ => 400,
                };
                Acknowledgement::json(status, json!({"error": refusal.to_string()}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_own_test_vector() {
        let body = br#"{"id":"evt_test_1","object":"event","type":"payment_intent.succeeded"}"#;
        assert_eq!(
            signature_header("whsec_test_secret", 1_492_774_577, body),
            "t=1492774577,v1=2db9bac94762c89afab0711bc961f9792d32f6902adc858aa6bbf8b600514c9e"
        );
    }
}
