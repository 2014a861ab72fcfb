//! A WeChat Pay API v3 double (direct merchant, JSAPI): prepay, query by out_trade_no,
//! close, refunds and their query, and notifications (`TRANSACTION.SUCCESS`,
//! `REFUND.SUCCESS`, …) encrypted with the APIv3 key and signed with the WeChat Pay
//! platform key. Requests must carry a valid `WECHATPAY2-SHA256-RSA2048` Authorization made
//! with the merchant key, or they get 401 `SIGN_ERROR`, unsigned, as WeChat answers them.

use super::{Fault, KeyPair, SharedFaults, before_answer, keys, random, verify};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const MCHID: &str = "1900000109";
pub const APPID: &str = "wx8888888888888888";
pub const MERCHANT_SERIAL: &str = "3775B6A45ACD588826D15E583A95F5DD6BEC4BFB";
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000001092025120400000000";
pub const API_V3_KEY: &str = "ordoTestApiV3Key0123456789abcdef";

/// A transaction as the double keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Txn {
    pub out_trade_no: String,
    pub appid: String,
    pub description: String,
    pub total: i64,
    pub currency: String,
    pub openid: String,
    pub time_expire: String,
    pub notify_url: String,
    pub prepay_id: String,
    /// NOTPAY, SUCCESS, CLOSED, REFUND.
    pub state: String,
    pub transaction_id: Option<String>,
    /// How many prepay requests named it.
    pub prepays: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub refund_id: String,
    pub amount: i64,
    /// PROCESSING, SUCCESS, ABNORMAL, CLOSED.
    pub status: String,
    pub notify_url: Option<String>,
}

/// What refund requests get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundMode {
    /// `PROCESSING`; [`WechatPayDouble::finish_refund`] completes it.
    Processing,
    /// `SUCCESS` at once.
    Succeed,
    /// Refused with this error code (403).
    Refuse(String),
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Whether its Authorization verified with the merchant key.
    pub signed: bool,
    pub body: String,
}

struct Inner {
    txns: BTreeMap<String, Txn>,
    refunds: BTreeMap<String, Refund>,
    seen: Vec<Seen>,
    refund_mode: RefundMode,
    /// The customer pays just as ordo closes: the close finds it paid.
    pay_before_close: bool,
}

/// The double: its keys, its state and where it listens.
#[derive(Clone)]
pub struct WechatPayDouble {
    pub base_url: String,
    pub merchant: KeyPair,
    pub platform: KeyPair,
    pub faults: SharedFaults,
    clock: ordo::Clock,
    inner: Arc<Mutex<Inner>>,
}

impl WechatPayDouble {
    /// Starts a double on a free loopback port; `clock` is the time it signs and checks by.
    pub async fn start(clock: ordo::Clock) -> WechatPayDouble {
        Self::start_on(clock, None).await
    }

    pub async fn start_on(clock: ordo::Clock, addr: Option<SocketAddr>) -> WechatPayDouble {
        let mut double = WechatPayDouble {
            base_url: String::new(),
            merchant: keys(0),
            platform: keys(1),
            faults: Default::default(),
            clock,
            inner: Arc::new(Mutex::new(Inner {
                txns: BTreeMap::new(),
                refunds: BTreeMap::new(),
                seen: Vec::new(),
                refund_mode: RefundMode::Processing,
                pay_before_close: false,
            })),
        };
        let router = Router::new()
            .route("/v3/pay/transactions/jsapi", post(prepay))
            .route("/v3/pay/transactions/out-trade-no/{otn}", get(query))
            .route("/v3/pay/transactions/out-trade-no/{otn}/close", post(close))
            .route("/v3/refund/domestic/refunds", post(refund))
            .route("/v3/refund/domestic/refunds/{no}", get(query_refund))
            .route("/_double/pay", post(control_pay))
            .route("/_double/transactions", get(control_list))
            .with_state(double.clone());
        let addr = match addr {
            Some(addr) => super::serve_on(router, addr).await.expect("bind"),
            None => super::serve(router).await,
        };
        double.base_url = format!("http://{addr}");
        double
    }

    /// The settings ordo needs to speak to this double, with key files written to `dir`.
    pub fn settings(&self, dir: &std::path::Path) -> Vec<(&'static str, String)> {
        vec![
            ("wechatpay_mchid", MCHID.to_owned()),
            ("wechatpay_appid", APPID.to_owned()),
            ("wechatpay_serial_no", MERCHANT_SERIAL.to_owned()),
            (
                "wechatpay_private_key_path",
                super::write(dir, "apiclient_key.pem", &self.merchant.private_pem),
            ),
            ("wechatpay_api_v3_key", API_V3_KEY.to_owned()),
            (
                "wechatpay_public_key_path",
                super::write(dir, "wechatpay_public_key.pem", &self.platform.public_pem),
            ),
            ("wechatpay_public_key_id", PUBLIC_KEY_ID.to_owned()),
            ("wechatpay_base_url", self.base_url.clone()),
        ]
    }

    /// A transaction as if ordo had opened it (seeding large benchmarks).
    pub fn insert(&self, out_trade_no: &str, total: i64, notify_url: &str) {
        let txn = Txn {
            out_trade_no: out_trade_no.to_owned(),
            appid: APPID.to_owned(),
            description: "Seeded".to_owned(),
            total,
            currency: "CNY".to_owned(),
            openid: "oSeeded".to_owned(),
            time_expire: china_time(self.clock.now()),
            notify_url: notify_url.to_owned(),
            prepay_id: format!("wx{}", random(34).to_ascii_lowercase()),
            state: "NOTPAY".to_owned(),
            transaction_id: None,
            prepays: 1,
        };
        self.inner
            .lock()
            .unwrap()
            .txns
            .insert(out_trade_no.to_owned(), txn);
    }

    pub fn txn(&self, out_trade_no: &str) -> Option<Txn> {
        self.inner.lock().unwrap().txns.get(out_trade_no).cloned()
    }

    pub fn txns(&self) -> Vec<Txn> {
        self.inner.lock().unwrap().txns.values().cloned().collect()
    }

    pub fn refunds(&self) -> Vec<Refund> {
        self.inner
            .lock()
            .unwrap()
            .refunds
            .values()
            .cloned()
            .collect()
    }

    /// Every request seen so far.
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

    pub fn set_delay(&self, delay: std::time::Duration) {
        self.faults.lock().unwrap().delay = delay;
    }

    /// The customer pays: the transaction succeeds. `None` when it cannot be paid (closed,
    /// paid already, unknown).
    pub fn pay_quietly(&self, out_trade_no: &str) -> Option<Txn> {
        let mut inner = self.inner.lock().unwrap();
        let txn = inner.txns.get_mut(out_trade_no)?;
        if txn.state != "NOTPAY" {
            return None;
        }
        txn.state = "SUCCESS".to_owned();
        txn.transaction_id = Some(format!("42000{}", random(23).to_ascii_lowercase()));
        Some(txn.clone())
    }

    /// Makes the next closes find their transaction paid a moment before.
    pub fn pay_before_close(&self, on: bool) {
        self.inner.lock().unwrap().pay_before_close = on;
    }

    /// Takes the money whatever the transaction's state (a provider's anomaly: money for a
    /// transaction ordo had closed), and notifies ordo.
    pub async fn force_pay(&self, out_trade_no: &str) -> Option<u16> {
        let txn = {
            let mut inner = self.inner.lock().unwrap();
            let txn = inner.txns.get_mut(out_trade_no)?;
            txn.state = "SUCCESS".to_owned();
            txn.transaction_id = Some(format!("42000{}", random(23).to_ascii_lowercase()));
            txn.clone()
        };
        let (headers, body) = self.notification(&txn, &Tweak::default());
        Some(super::post(&txn.notify_url, &headers, body).await.status)
    }

    /// The customer pays and WeChat Pay notifies ordo; returns ordo's answer's status (0: no
    /// answer), or `None` when the transaction could not be paid.
    pub async fn pay(&self, out_trade_no: &str) -> Option<u16> {
        let txn = self.pay_quietly(out_trade_no)?;
        let (headers, body) = self.notification(&txn, &Tweak::default());
        Some(super::post(&txn.notify_url, &headers, body).await.status)
    }

    /// The `TRANSACTION.SUCCESS` notification of `txn`, as WeChat Pay would send it, with
    /// `tweak` applied (to forge one).
    pub fn notification(&self, txn: &Txn, tweak: &Tweak) -> (Vec<(String, String)>, Vec<u8>) {
        let resource = json!({
            "appid": tweak.appid.clone().unwrap_or_else(|| txn.appid.clone()),
            "mchid": tweak.mchid.clone().unwrap_or_else(|| MCHID.to_owned()),
            "out_trade_no": txn.out_trade_no,
            "transaction_id": txn.transaction_id.clone().unwrap_or_default(),
            "trade_type": "JSAPI",
            "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功",
            "bank_type": "OTHERS",
            "attach": "",
            "success_time": china_time(self.clock.now()),
            "payer": {"openid": txn.openid},
            "amount": {"total": tweak.amount.unwrap_or(txn.total), "payer_total": tweak.amount.unwrap_or(txn.total),
                       "currency": tweak.currency.clone().unwrap_or_else(|| "CNY".to_owned()), "payer_currency": "CNY"},
        });
        self.envelope("TRANSACTION.SUCCESS", "transaction", &resource, tweak)
    }

    /// A `REFUND.*` notification.
    pub fn refund_notification(
        &self,
        refund: &Refund,
        tweak: &Tweak,
    ) -> (Vec<(String, String)>, Vec<u8>) {
        let resource = json!({
            "mchid": tweak.mchid.clone().unwrap_or_else(|| MCHID.to_owned()),
            "out_trade_no": refund.out_trade_no,
            "transaction_id": "",
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
            "success_time": china_time(self.clock.now()),
            "user_received_account": "支付用户零钱",
            "amount": {"total": refund.amount, "refund": refund.amount,
                       "payer_total": refund.amount, "payer_refund": refund.amount},
        });
        let event = format!("REFUND.{}", refund.status);
        self.envelope(&event, "refund", &resource, tweak)
    }

    fn envelope(
        &self,
        event_type: &str,
        original_type: &str,
        resource: &Value,
        tweak: &Tweak,
    ) -> (Vec<(String, String)>, Vec<u8>) {
        let nonce = random(12);
        let cipher = Aes256Gcm::new_from_slice(API_V3_KEY.as_bytes()).expect("a 32-byte key");
        let mut sealed = cipher
            .encrypt(
                &Nonce::from(<[u8; 12]>::try_from(nonce.as_bytes()).expect("12 bytes")),
                Payload {
                    msg: resource.to_string().as_bytes(),
                    aad: original_type.as_bytes(),
                },
            )
            .expect("encrypt");
        if tweak.tamper_ciphertext {
            sealed[0] ^= 0x55;
        }
        let body = json!({
            "id": tweak.event_id.clone().unwrap_or_else(|| format!("EV-{}", random(20))),
            "create_time": china_time(self.clock.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功",
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": BASE64.encode(sealed),
                "associated_data": original_type,
                "nonce": nonce,
            },
        })
        .to_string()
        .into_bytes();
        let timestamp = self.clock.now().div_euclid(1000) + tweak.timestamp_offset_s;
        let headers = self.signature_headers(&body, timestamp, tweak);
        (headers, body)
    }

    /// Headers that sign any `body` (a notification that verifies but says nothing sensible).
    pub fn sign_body(&self, body: &[u8]) -> Vec<(String, String)> {
        self.signature_headers(body, self.clock.now().div_euclid(1000), &Tweak::default())
    }

    /// The headers that sign `body`, as WeChat Pay sends them.
    fn signature_headers(
        &self,
        body: &[u8],
        timestamp: i64,
        tweak: &Tweak,
    ) -> Vec<(String, String)> {
        let nonce = random(32);
        let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        let signer = if tweak.signed_by_merchant {
            &self.merchant
        } else {
            &self.platform
        };
        let mut signature = signer.sign(&message);
        if tweak.bad_signature {
            signature = self.platform.sign(b"something else");
        }
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Wechatpay-Timestamp".to_owned(), timestamp.to_string()),
            ("Wechatpay-Nonce".to_owned(), nonce),
            (
                "Wechatpay-Serial".to_owned(),
                tweak
                    .serial
                    .clone()
                    .unwrap_or_else(|| PUBLIC_KEY_ID.to_owned()),
            ),
            ("Wechatpay-Signature".to_owned(), signature),
            (
                "Wechatpay-Signature-Type".to_owned(),
                "WECHATPAY2-SHA256-RSA2048".to_owned(),
            ),
        ]
    }

    /// Completes a processing refund with `status` (SUCCESS, ABNORMAL, CLOSED) and notifies
    /// ordo (unless `notify` is false); returns ordo's answer's status.
    pub async fn finish_refund(
        &self,
        out_refund_no: &str,
        status: &str,
        notify: bool,
    ) -> Option<u16> {
        let refund = {
            let mut inner = self.inner.lock().unwrap();
            let refund = inner.refunds.get_mut(out_refund_no)?;
            refund.status = status.to_owned();
            let refund = refund.clone();
            if status == "SUCCESS"
                && let Some(txn) = inner.txns.get_mut(&refund.out_trade_no)
            {
                txn.state = "REFUND".to_owned();
            }
            refund
        };
        if !notify {
            return Some(0);
        }
        let url = refund.notify_url.clone()?;
        let (headers, body) = self.refund_notification(&refund, &Tweak::default());
        Some(super::post(&url, &headers, body).await.status)
    }

    /// An answer signed as WeChat Pay signs them (or, with the fault, with a wrong key).
    fn signed(&self, status: StatusCode, body: Option<Value>, fault: Option<Fault>) -> Response {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let tweak = Tweak {
            bad_signature: fault == Some(Fault::BadSignature),
            ..Tweak::default()
        };
        let headers =
            self.signature_headers(text.as_bytes(), self.clock.now().div_euclid(1000), &tweak);
        let mut response = (status, text).into_response();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::try_from(name),
                axum::http::HeaderValue::try_from(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }

    /// Checks a request's Authorization; records it.
    fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> bool {
        let signed = self.authorization_ok(method, uri, headers, body);
        self.inner.lock().unwrap().seen.push(Seen {
            method: method.to_string(),
            path: uri.path().to_owned(),
            signed,
            body: String::from_utf8_lossy(body).into_owned(),
        });
        signed
    }

    fn authorization_ok(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> bool {
        let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(fields) = value.strip_prefix("WECHATPAY2-SHA256-RSA2048 ") else {
            return false;
        };
        let mut pairs = BTreeMap::new();
        for field in fields.split(',') {
            let Some((key, quoted)) = field.split_once('=') else {
                return false;
            };
            let Some(value) = quoted.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
                return false;
            };
            pairs.insert(key.to_owned(), value.to_owned());
        }
        let (Some(mchid), Some(nonce), Some(signature), Some(timestamp), Some(serial)) = (
            pairs.get("mchid"),
            pairs.get("nonce_str"),
            pairs.get("signature"),
            pairs.get("timestamp"),
            pairs.get("serial_no"),
        ) else {
            return false;
        };
        if mchid != MCHID || serial != MERCHANT_SERIAL {
            return false;
        }
        let Ok(ts) = timestamp.parse::<i64>() else {
            return false;
        };
        if (self.clock.now().div_euclid(1000) - ts).abs() > 300 {
            return false;
        }
        let path_query = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let mut message = format!("{method}\n{path_query}\n{timestamp}\n{nonce}\n").into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        verify(&self.merchant.public, &message, signature)
    }
}

/// What to change in a notification (to forge one).
#[derive(Debug, Clone, Default)]
pub struct Tweak {
    pub bad_signature: bool,
    /// Signed with the merchant's key instead of WeChat Pay's.
    pub signed_by_merchant: bool,
    pub timestamp_offset_s: i64,
    pub serial: Option<String>,
    pub tamper_ciphertext: bool,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub mchid: Option<String>,
    pub appid: Option<String>,
    pub event_id: Option<String>,
}

fn china_time(ms: i64) -> String {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&offset)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("Content-Type", "application/json")],
        json!({"code": code, "message": message}).to_string(),
    )
        .into_response()
}

fn sign_error() -> Response {
    error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", "签名错误")
}

/// A fault before an answer: a server error (unsigned), or nothing (let the handler answer).
async fn faulted(double: &WechatPayDouble) -> Result<Option<Fault>, Response> {
    match before_answer(&double.faults).await {
        Some(Fault::ServerError) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SYSTEM_ERROR",
            "系统错误",
        )),
        other => Ok(other),
    }
}

fn out_trade_no_ok(otn: &str) -> bool {
    (6..=32).contains(&otn.len())
        && otn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

fn transaction_json(txn: &Txn) -> Value {
    let mut value = json!({
        "appid": txn.appid, "mchid": MCHID, "out_trade_no": txn.out_trade_no,
        "trade_type": "JSAPI", "trade_state": txn.state, "trade_state_desc": "",
        "amount": {"total": txn.total, "currency": txn.currency},
    });
    if let Some(id) = &txn.transaction_id {
        value["transaction_id"] = json!(id);
        value["payer"] = json!({"openid": txn.openid});
        value["amount"]["payer_total"] = json!(txn.total);
        value["amount"]["payer_currency"] = json!("CNY");
    }
    value
}

async fn prepay(
    State(double): State<WechatPayDouble>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match faulted(&double).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !double.check(&method, &uri, &headers, &body) {
        return sign_error();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "body is not JSON");
    };
    let text = |key: &str| request[key].as_str().unwrap_or_default().to_owned();
    let (appid, otn, description) = (text("appid"), text("out_trade_no"), text("description"));
    let total = request["amount"]["total"].as_i64().unwrap_or(0);
    let currency = request["amount"]["currency"]
        .as_str()
        .unwrap_or("CNY")
        .to_owned();
    let openid = request["payer"]["openid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let notify_url = text("notify_url");
    let time_expire = text("time_expire");
    if appid != APPID || text("mchid") != MCHID {
        return error(
            StatusCode::BAD_REQUEST,
            "APPID_MCHID_NOT_MATCH",
            "appid和mch_id不匹配",
        );
    }
    if !out_trade_no_ok(&otn)
        || description.is_empty()
        || description.chars().count() > 127
        || total < 1
        || currency != "CNY"
        || openid.is_empty()
        || notify_url.is_empty()
        || notify_url.contains('?')
        || chrono::DateTime::parse_from_rfc3339(&time_expire).is_err()
    {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
    }
    let txn = {
        let mut inner = double.inner.lock().unwrap();
        match inner.txns.get_mut(&otn) {
            Some(existing) => {
                if existing.total != total || existing.openid != openid || existing.appid != appid {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_REQUEST",
                        "参数与首次请求时不一致",
                    );
                }
                if existing.state == "SUCCESS" {
                    return error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付");
                }
                existing.prepays += 1;
                existing.clone()
            }
            None => {
                let txn = Txn {
                    out_trade_no: otn.clone(),
                    appid,
                    description,
                    total,
                    currency,
                    openid,
                    time_expire,
                    notify_url,
                    prepay_id: format!("wx{}", random(34).to_ascii_lowercase()),
                    state: "NOTPAY".to_owned(),
                    transaction_id: None,
                    prepays: 1,
                };
                inner.txns.insert(otn.clone(), txn.clone());
                txn
            }
        }
    };
    double.signed(
        StatusCode::OK,
        Some(json!({"prepay_id": txn.prepay_id})),
        fault,
    )
}

async fn query(
    State(double): State<WechatPayDouble>,
    Path(otn): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let fault = match faulted(&double).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !double.check(&method, &uri, &headers, b"") {
        return sign_error();
    }
    if !uri
        .query()
        .unwrap_or_default()
        .contains(&format!("mchid={MCHID}"))
    {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid is missing");
    }
    let txn = double.txn(&otn);
    match txn {
        Some(txn) => double.signed(StatusCode::OK, Some(transaction_json(&txn)), fault),
        None => double.signed(
            StatusCode::NOT_FOUND,
            Some(json!({"code": "ORDER_NOT_EXIST", "message": "订单不存在"})),
            fault,
        ),
    }
}

async fn close(
    State(double): State<WechatPayDouble>,
    Path(otn): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match faulted(&double).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !double.check(&method, &uri, &headers, &body) {
        return sign_error();
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    if request["mchid"].as_str() != Some(MCHID) {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid");
    }
    {
        let mut inner = double.inner.lock().unwrap();
        let pay_first = inner.pay_before_close;
        if let Some(txn) = inner.txns.get_mut(&otn) {
            if pay_first && txn.state == "NOTPAY" {
                txn.state = "SUCCESS".to_owned();
                txn.transaction_id = Some(format!("42000{}", random(23).to_ascii_lowercase()));
            }
            match txn.state.as_str() {
                "NOTPAY" => txn.state = "CLOSED".to_owned(),
                "SUCCESS" | "REFUND" => {
                    return error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付");
                }
                _ => {}
            }
        }
    }
    double.signed(StatusCode::NO_CONTENT, None, fault)
}

async fn refund(
    State(double): State<WechatPayDouble>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match faulted(&double).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !double.check(&method, &uri, &headers, &body) {
        return sign_error();
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let otn = request["out_trade_no"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let number = request["out_refund_no"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let amount = request["amount"]["refund"].as_i64().unwrap_or(0);
    let total = request["amount"]["total"].as_i64().unwrap_or(0);
    let notify_url = request["notify_url"].as_str().map(str::to_owned);
    let mode = double.inner.lock().unwrap().refund_mode.clone();
    let refund = {
        let mut inner = double.inner.lock().unwrap();
        if let Some(existing) = inner.refunds.get(&number) {
            existing.clone()
        } else {
            let Some(txn) = inner.txns.get(&otn).cloned() else {
                return error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在");
            };
            if !matches!(txn.state.as_str(), "SUCCESS" | "REFUND") {
                return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "订单未支付");
            }
            if amount < 1 || amount > txn.total || total != txn.total || number.is_empty() {
                return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "退款金额不正确");
            }
            if let RefundMode::Refuse(code) = &mode {
                return error(StatusCode::FORBIDDEN, code, "退款被拒绝");
            }
            let refund = Refund {
                out_refund_no: number.clone(),
                out_trade_no: otn.clone(),
                refund_id: format!("50{}", random(27).to_ascii_lowercase()),
                amount,
                status: if mode == RefundMode::Succeed {
                    "SUCCESS"
                } else {
                    "PROCESSING"
                }
                .to_owned(),
                notify_url,
            };
            if refund.status == "SUCCESS"
                && let Some(txn) = inner.txns.get_mut(&otn)
            {
                txn.state = "REFUND".to_owned();
            }
            inner.refunds.insert(number.clone(), refund.clone());
            refund
        }
    };
    double.signed(StatusCode::OK, Some(refund_json(&refund)), fault)
}

fn refund_json(refund: &Refund) -> Value {
    json!({"refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
           "out_trade_no": refund.out_trade_no, "channel": "ORIGINAL", "status": refund.status,
           "amount": {"total": refund.amount, "refund": refund.amount, "currency": "CNY"}})
}

async fn query_refund(
    State(double): State<WechatPayDouble>,
    Path(number): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let fault = match faulted(&double).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !double.check(&method, &uri, &headers, b"") {
        return sign_error();
    }
    let refund = double.inner.lock().unwrap().refunds.get(&number).cloned();
    match refund {
        Some(refund) => double.signed(StatusCode::OK, Some(refund_json(&refund)), fault),
        None => double.signed(
            StatusCode::NOT_FOUND,
            Some(json!({"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})),
            fault,
        ),
    }
}

/// `POST /_double/pay {"out_trade_no": …}`: the customer pays (for trying ordo by hand).
async fn control_pay(State(double): State<WechatPayDouble>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let otn = request["out_trade_no"].as_str().unwrap_or_default();
    match double.pay(otn).await {
        Some(status) => (
            StatusCode::OK,
            json!({"paid": otn, "notified": double.txn(otn).map(|t| t.notify_url), "ordo_answered": status})
                .to_string(),
        )
            .into_response(),
        None => (
            StatusCode::CONFLICT,
            json!({"error": format!("no unpaid transaction {otn:?}")}).to_string(),
        )
            .into_response(),
    }
}

async fn control_list(State(double): State<WechatPayDouble>) -> Response {
    let txns: Vec<Value> = double
        .txns()
        .iter()
        .map(|t| json!({"out_trade_no": t.out_trade_no, "total": t.total, "state": t.state,
                        "openid": t.openid, "time_expire": t.time_expire, "notify_url": t.notify_url}))
        .collect();
    (StatusCode::OK, json!(txns).to_string()).into_response()
}
