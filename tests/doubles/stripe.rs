//! A Stripe API double: PaymentIntents (create, retrieve, cancel), refunds (create,
//! retrieve), `Idempotency-Key` replay (the same key and parameters answer the first
//! answer again; other parameters are refused), the secret key checked on every request,
//! and webhooks signed `Stripe-Signature: t=…,v1=…` with the `whsec_…` secret.

use super::{Fault, SharedFaults, before_answer, random};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const SECRET_KEY: &str = "sk_test_ordoDouble0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_ordoDoubleWebhookSecret0123";

#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub client_secret: String,
    pub metadata: BTreeMap<String, String>,
    pub latest_charge: Option<String>,
    pub amount_refunded: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundObject {
    pub id: String,
    pub payment_intent: String,
    pub amount: i64,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundMode {
    Pending,
    Succeed,
    /// 400 with this code.
    Refuse(String),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorized: bool,
    pub idempotency_key: Option<String>,
    pub form: BTreeMap<String, String>,
}

struct Inner {
    intents: BTreeMap<String, Intent>,
    refunds: BTreeMap<String, RefundObject>,
    /// Idempotency key -> (path, parameters, status, answer).
    keys: BTreeMap<String, (String, BTreeMap<String, String>, u16, String)>,
    seen: Vec<Seen>,
    refund_mode: RefundMode,
    /// Where webhooks go.
    webhook_url: Option<String>,
    pay_before_close: bool,
}

#[derive(Clone)]
pub struct StripeDouble {
    pub base_url: String,
    pub faults: SharedFaults,
    clock: ordo::Clock,
    inner: Arc<Mutex<Inner>>,
}

impl StripeDouble {
    pub async fn start(clock: ordo::Clock) -> StripeDouble {
        Self::start_on(clock, None).await
    }

    pub async fn start_on(clock: ordo::Clock, addr: Option<SocketAddr>) -> StripeDouble {
        let mut double = StripeDouble {
            base_url: String::new(),
            faults: Default::default(),
            clock,
            inner: Arc::new(Mutex::new(Inner {
                intents: BTreeMap::new(),
                refunds: BTreeMap::new(),
                keys: BTreeMap::new(),
                seen: Vec::new(),
                refund_mode: RefundMode::Pending,
                webhook_url: None,
                pay_before_close: false,
            })),
        };
        let router = Router::new()
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/payment_intents/{id}", get(retrieve_intent))
            .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
            .route("/v1/refunds", post(create_refund))
            .route("/v1/refunds/{id}", get(retrieve_refund))
            .route("/_double/pay", post(control_pay))
            .with_state(double.clone());
        let addr = match addr {
            Some(addr) => super::serve_on(router, addr).await.expect("bind"),
            None => super::serve(router).await,
        };
        double.base_url = format!("http://{addr}");
        double
    }

    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("stripe_secret_key", SECRET_KEY.to_owned()),
            ("stripe_webhook_secret", WEBHOOK_SECRET.to_owned()),
            ("stripe_base_url", self.base_url.clone()),
        ]
    }

    /// Where the double sends its webhooks (Stripe's dashboard holds this).
    pub fn send_webhooks_to(&self, url: &str) {
        self.inner.lock().unwrap().webhook_url = Some(url.to_owned());
    }

    pub fn intent(&self, id: &str) -> Option<Intent> {
        self.inner.lock().unwrap().intents.get(id).cloned()
    }

    pub fn intents(&self) -> Vec<Intent> {
        self.inner
            .lock()
            .unwrap()
            .intents
            .values()
            .cloned()
            .collect()
    }

    pub fn refunds(&self) -> Vec<RefundObject> {
        self.inner
            .lock()
            .unwrap()
            .refunds
            .values()
            .cloned()
            .collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    pub fn set_refund_mode(&self, mode: RefundMode) {
        self.inner.lock().unwrap().refund_mode = mode;
    }

    pub fn fail_next(&self, faults: &[Fault]) {
        self.faults
            .lock()
            .unwrap()
            .next
            .extend(faults.iter().copied());
    }

    pub fn fail_always(&self, fault: Option<Fault>) {
        self.faults.lock().unwrap().always = fault;
    }

    /// Makes the next cancels find their intent paid a moment before.
    pub fn pay_before_close(&self, on: bool) {
        self.inner.lock().unwrap().pay_before_close = on;
    }

    /// Takes the money whatever the intent's state (a provider's anomaly), and tells ordo.
    pub async fn force_pay(&self, id: &str) -> Option<u16> {
        let intent = {
            let mut inner = self.inner.lock().unwrap();
            let intent = inner.intents.get_mut(id)?;
            intent.status = "succeeded".to_owned();
            intent.latest_charge = Some(format!("ch_{}", random(24)));
            intent.clone()
        };
        Some(
            self.send_event(
                "payment_intent.succeeded",
                intent_json(&intent),
                &Tweak::default(),
            )
            .await,
        )
    }

    /// The customer pays: the intent succeeds.
    pub fn pay_quietly(&self, id: &str) -> Option<Intent> {
        let mut inner = self.inner.lock().unwrap();
        let intent = inner.intents.get_mut(id)?;
        if intent.status != "requires_payment_method" {
            return None;
        }
        intent.status = "succeeded".to_owned();
        intent.latest_charge = Some(format!("ch_{}", random(24)));
        Some(intent.clone())
    }

    /// The customer pays and Stripe sends `payment_intent.succeeded`.
    pub async fn pay(&self, id: &str) -> Option<u16> {
        let intent = self.pay_quietly(id)?;
        Some(
            self.send_event(
                "payment_intent.succeeded",
                intent_json(&intent),
                &Tweak::default(),
            )
            .await,
        )
    }

    /// An event as Stripe sends it: (headers, body), with `tweak` applied.
    pub fn event(
        &self,
        kind: &str,
        object: Value,
        tweak: &Tweak,
    ) -> (Vec<(String, String)>, Vec<u8>) {
        let body = json!({
            "id": tweak.event_id.clone().unwrap_or_else(|| format!("evt_{}", random(24))),
            "object": "event", "api_version": "2026-07-29.dahlia",
            "created": self.clock.now() / 1000, "livemode": false, "pending_webhooks": 1,
            "type": kind, "data": {"object": object},
        })
        .to_string()
        .into_bytes();
        let t = self.clock.now().div_euclid(1000) + tweak.timestamp_offset_s;
        let secret = if tweak.bad_signature {
            "whsec_wrong"
        } else {
            WEBHOOK_SECRET
        };
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&body);
        let signature = hex::encode(mac.finalize().into_bytes());
        (
            vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                (
                    "Stripe-Signature".to_owned(),
                    format!("t={t},v1={signature}"),
                ),
            ],
            body,
        )
    }

    /// A `Stripe-Signature` for any `body`.
    pub fn sign_body(&self, body: &[u8]) -> Vec<(String, String)> {
        let t = self.clock.now().div_euclid(1000);
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(WEBHOOK_SECRET.as_bytes())
                .unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            (
                "Stripe-Signature".to_owned(),
                format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())),
            ),
        ]
    }

    pub async fn send_event(&self, kind: &str, object: Value, tweak: &Tweak) -> u16 {
        let Some(url) = self.inner.lock().unwrap().webhook_url.clone() else {
            return 0;
        };
        let (headers, body) = self.event(kind, object, tweak);
        super::post(&url, &headers, body).await.status
    }

    /// Completes a pending refund, and tells ordo (`charge.refunded`).
    pub async fn finish_refund(&self, refund_id: &str, status: &str) -> Option<u16> {
        let (refund, intent) = {
            let mut inner = self.inner.lock().unwrap();
            let refund = inner.refunds.get_mut(refund_id)?;
            refund.status = status.to_owned();
            let refund = refund.clone();
            let intent = inner.intents.get_mut(&refund.payment_intent)?;
            if status == "succeeded" {
                intent.amount_refunded += refund.amount;
            }
            (refund, intent.clone())
        };
        Some(if status == "succeeded" {
            self.send_event(
                "charge.refunded",
                json!({"id": intent.latest_charge, "object": "charge", "payment_intent": intent.id,
                       "amount": intent.amount, "amount_refunded": intent.amount_refunded,
                       "refunded": intent.amount_refunded >= intent.amount}),
                &Tweak::default(),
            )
            .await
        } else {
            self.send_event("refund.failed", refund_json(&refund), &Tweak::default())
                .await
        })
    }

    /// Checks the key, decodes the form, replays an idempotent request: `Err` is the answer.
    fn admit(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(BTreeMap<String, String>, Option<String>), Response> {
        let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {SECRET_KEY}"));
        let form: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.inner.lock().unwrap().seen.push(Seen {
            method: method.to_string(),
            path: path.to_owned(),
            authorized,
            idempotency_key: key.clone(),
            form: form.clone(),
        });
        if !authorized {
            return Err(stripe_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "Invalid API Key provided",
            ));
        }
        if let Some(key) = &key {
            let inner = self.inner.lock().unwrap();
            if let Some((first_path, first_form, status, answer)) = inner.keys.get(key) {
                if first_path != path || first_form != &form {
                    return Err(stripe_error(
                        StatusCode::BAD_REQUEST,
                        "idempotency_error",
                        None,
                        &format!(
                            "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                        ),
                    ));
                }
                return Err((
                    StatusCode::from_u16(*status).unwrap(),
                    [("Content-Type", "application/json")],
                    answer.clone(),
                )
                    .into_response());
            }
        }
        Ok((form, key))
    }

    fn remember(
        &self,
        key: Option<String>,
        path: &str,
        form: BTreeMap<String, String>,
        status: StatusCode,
        answer: &Value,
    ) {
        if let Some(key) = key {
            self.inner.lock().unwrap().keys.insert(
                key,
                (path.to_owned(), form, status.as_u16(), answer.to_string()),
            );
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tweak {
    pub bad_signature: bool,
    pub timestamp_offset_s: i64,
    pub event_id: Option<String>,
}

pub fn intent_json(intent: &Intent) -> Value {
    json!({
        "id": intent.id, "object": "payment_intent", "amount": intent.amount,
        "amount_received": if intent.status == "succeeded" { intent.amount } else { 0 },
        "currency": intent.currency, "status": intent.status,
        "client_secret": intent.client_secret, "latest_charge": intent.latest_charge,
        "metadata": intent.metadata, "livemode": false,
    })
}

fn refund_json(refund: &RefundObject) -> Value {
    json!({"id": refund.id, "object": "refund", "amount": refund.amount,
           "payment_intent": refund.payment_intent, "status": refund.status,
           "failure_reason": if refund.status == "failed" { Some("declined") } else { None }})
}

fn stripe_error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    (
        status,
        [("Content-Type", "application/json")],
        json!({"error": {"type": kind, "code": code, "message": message}}).to_string(),
    )
        .into_response()
}

async fn faulted(double: &StripeDouble) -> Result<(), Response> {
    match before_answer(&double.faults).await {
        Some(Fault::ServerError) => Err(stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "An unknown error occurred",
        )),
        Some(Fault::BadSignature) => Err((StatusCode::OK, "{not json").into_response()),
        _ => Ok(()),
    }
}

fn json_answer(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [("Content-Type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn create_intent(
    State(double): State<StripeDouble>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = faulted(&double).await {
        return r;
    }
    let path = "/v1/payment_intents";
    let (form, key) = match double.admit(&method, path, &headers, &body) {
        Ok(ok) => ok,
        Err(answer) => return answer,
    };
    let amount = form
        .get("amount")
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or(0);
    let currency = form.get("currency").cloned().unwrap_or_default();
    if amount < 1 || currency.len() != 3 || currency != currency.to_ascii_lowercase() {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "Invalid amount or currency",
        );
    }
    let id = format!("pi_{}", random(24));
    let metadata: BTreeMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    let intent = Intent {
        client_secret: format!("{id}_secret_{}", random(24)),
        id: id.clone(),
        amount,
        currency,
        status: "requires_payment_method".to_owned(),
        metadata,
        latest_charge: None,
        amount_refunded: 0,
    };
    double
        .inner
        .lock()
        .unwrap()
        .intents
        .insert(id, intent.clone());
    let answer = intent_json(&intent);
    double.remember(key, path, form, StatusCode::OK, &answer);
    json_answer(StatusCode::OK, &answer)
}

async fn retrieve_intent(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = faulted(&double).await {
        return r;
    }
    if let Err(answer) = double.admit(&method, &format!("/v1/payment_intents/{id}"), &headers, b"")
    {
        return answer;
    }
    match double.intent(&id) {
        Some(intent) => json_answer(StatusCode::OK, &intent_json(&intent)),
        None => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{id}'"),
        ),
    }
}

async fn cancel_intent(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = faulted(&double).await {
        return r;
    }
    let path = format!("/v1/payment_intents/{id}/cancel");
    let (form, key) = match double.admit(&method, &path, &headers, &body) {
        Ok(ok) => ok,
        Err(answer) => return answer,
    };
    let intent = {
        let mut inner = double.inner.lock().unwrap();
        let pay_first = inner.pay_before_close;
        let Some(intent) = inner.intents.get_mut(&id) else {
            return stripe_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("resource_missing"),
                "No such payment_intent",
            );
        };
        if pay_first && intent.status == "requires_payment_method" {
            intent.status = "succeeded".to_owned();
            intent.latest_charge = Some(format!("ch_{}", random(24)));
        }
        if matches!(intent.status.as_str(), "succeeded" | "canceled") {
            let answer = json!({"error": {
                "type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                "message": format!("You cannot cancel this PaymentIntent because it has a status of {}.", intent.status),
                "payment_intent": intent_json(intent)}});
            return json_answer(StatusCode::BAD_REQUEST, &answer);
        }
        intent.status = "canceled".to_owned();
        intent.clone()
    };
    let answer = intent_json(&intent);
    double.remember(key, &path, form, StatusCode::OK, &answer);
    json_answer(StatusCode::OK, &answer)
}

async fn create_refund(
    State(double): State<StripeDouble>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = faulted(&double).await {
        return r;
    }
    let path = "/v1/refunds";
    let (form, key) = match double.admit(&method, path, &headers, &body) {
        Ok(ok) => ok,
        Err(answer) => return answer,
    };
    let pi = form.get("payment_intent").cloned().unwrap_or_default();
    let mode = double.inner.lock().unwrap().refund_mode.clone();
    let refund = {
        let mut inner = double.inner.lock().unwrap();
        let Some(intent) = inner.intents.get(&pi).cloned() else {
            return stripe_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("resource_missing"),
                "No such payment_intent",
            );
        };
        let amount = form
            .get("amount")
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(intent.amount);
        if intent.status != "succeeded" || amount > intent.amount - intent.amount_refunded {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("charge_already_refunded"),
                "This charge cannot be refunded",
            );
        }
        if let RefundMode::Refuse(code) = &mode {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some(code),
                "The refund was declined",
            );
        }
        let refund = RefundObject {
            id: format!("re_{}", random(24)),
            payment_intent: pi.clone(),
            amount,
            status: if mode == RefundMode::Succeed {
                "succeeded"
            } else {
                "pending"
            }
            .to_owned(),
        };
        if refund.status == "succeeded"
            && let Some(intent) = inner.intents.get_mut(&pi)
        {
            intent.amount_refunded += amount;
        }
        inner.refunds.insert(refund.id.clone(), refund.clone());
        refund
    };
    let answer = refund_json(&refund);
    double.remember(key, path, form, StatusCode::OK, &answer);
    json_answer(StatusCode::OK, &answer)
}

async fn retrieve_refund(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = faulted(&double).await {
        return r;
    }
    if let Err(answer) = double.admit(&method, &format!("/v1/refunds/{id}"), &headers, b"") {
        return answer;
    }
    match double.inner.lock().unwrap().refunds.get(&id) {
        Some(refund) => json_answer(StatusCode::OK, &refund_json(refund)),
        None => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            "No such refund",
        ),
    }
}

async fn control_pay(State(double): State<StripeDouble>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = request["payment_intent"].as_str().unwrap_or_default();
    match double.pay(id).await {
        Some(status) => json_answer(
            StatusCode::OK,
            &json!({"paid": id, "ordo_answered": status}),
        ),
        None => json_answer(
            StatusCode::CONFLICT,
            &json!({"error": format!("no unpaid intent {id:?}")}),
        ),
    }
}
