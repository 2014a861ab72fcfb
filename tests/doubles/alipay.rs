//! An Alipay OpenAPI gateway double (`gateway.do`, RSA2, public-key mode):
//! `alipay.trade.precreate`, `.query`, `.close`, `.refund`, `.fastpay.refund.query`, and
//! form-post notifications. Requests must be signed with the app's key (sorted parameters
//! without `sign`); answers are signed with Alipay's key over the exact bytes of their
//! `…_response` object. As at Alipay, a precreated trade does not exist until its QR code is
//! scanned.

use super::{Fault, KeyPair, SharedFaults, before_answer, keys, random, verify};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const APP_ID: &str = "2021000111111111";
pub const SELLER_ID: &str = "2088102111111111";

#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub out_trade_no: String,
    /// Yuan, as sent: "12.00".
    pub total_amount: String,
    pub subject: String,
    pub time_expire: String,
    pub notify_url: String,
    pub qr_code: String,
    /// Whether the QR code was scanned (the trade exists at Alipay).
    pub scanned: bool,
    /// WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_CLOSED.
    pub status: String,
    pub trade_no: Option<String>,
    pub refunded: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundMode {
    Succeed,
    Refuse(String),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub signed: bool,
    pub params: BTreeMap<String, String>,
}

struct Inner {
    trades: BTreeMap<String, Trade>,
    seen: Vec<Seen>,
    refund_mode: RefundMode,
    pay_before_close: bool,
}

#[derive(Clone)]
pub struct AlipayDouble {
    pub gateway_url: String,
    pub app: KeyPair,
    pub alipay: KeyPair,
    pub faults: SharedFaults,
    clock: ordo::Clock,
    inner: Arc<Mutex<Inner>>,
}

impl AlipayDouble {
    pub async fn start(clock: ordo::Clock) -> AlipayDouble {
        Self::start_on(clock, None).await
    }

    pub async fn start_on(clock: ordo::Clock, addr: Option<SocketAddr>) -> AlipayDouble {
        let mut double = AlipayDouble {
            gateway_url: String::new(),
            app: keys(2),
            alipay: keys(3),
            faults: Default::default(),
            clock,
            inner: Arc::new(Mutex::new(Inner {
                trades: BTreeMap::new(),
                seen: Vec::new(),
                refund_mode: RefundMode::Succeed,
                pay_before_close: false,
            })),
        };
        let router = Router::new()
            .route("/gateway.do", post(gateway))
            .route("/_double/pay", post(control_pay))
            .route("/_double/trades", get(control_list))
            .with_state(double.clone());
        let addr = match addr {
            Some(addr) => super::serve_on(router, addr).await.expect("bind"),
            None => super::serve(router).await,
        };
        double.gateway_url = format!("http://{addr}/gateway.do");
        double
    }

    pub fn settings(&self, dir: &std::path::Path) -> Vec<(&'static str, String)> {
        vec![
            ("alipay_app_id", APP_ID.to_owned()),
            (
                "alipay_private_key_path",
                super::write(dir, "alipay_app_private_key.pem", &self.app.private_pem),
            ),
            (
                "alipay_public_key_path",
                super::write(dir, "alipay_public_key.pem", &self.alipay.public_pem),
            ),
            ("alipay_gateway_url", self.gateway_url.clone()),
        ]
    }

    pub fn trade(&self, out_trade_no: &str) -> Option<Trade> {
        self.inner.lock().unwrap().trades.get(out_trade_no).cloned()
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

    /// Makes the next closes find their trade scanned and paid a moment before.
    pub fn pay_before_close(&self, on: bool) {
        self.inner.lock().unwrap().pay_before_close = on;
    }

    /// Takes the money whatever the trade's state (a provider's anomaly), and notifies ordo.
    pub async fn force_pay(&self, out_trade_no: &str) -> Option<super::Sent> {
        let trade = {
            let mut inner = self.inner.lock().unwrap();
            let trade = inner.trades.get_mut(out_trade_no)?;
            trade.scanned = true;
            trade.status = "TRADE_SUCCESS".to_owned();
            trade.trade_no = Some(format!("2026{}", random(24).to_ascii_lowercase()));
            trade.clone()
        };
        let body = self.notification(&trade, &Tweak::default());
        Some(
            super::post(
                &trade.notify_url,
                &[(
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
                )],
                body.into_bytes(),
            )
            .await,
        )
    }

    /// The customer scans the QR code: the trade exists at Alipay from now on.
    pub fn scan(&self, out_trade_no: &str) -> bool {
        let mut inner = self.inner.lock().unwrap();
        match inner.trades.get_mut(out_trade_no) {
            Some(trade) if trade.status == "WAIT_BUYER_PAY" => {
                trade.scanned = true;
                true
            }
            _ => false,
        }
    }

    /// The customer scans and pays, without a notification reaching ordo.
    pub fn pay_quietly(&self, out_trade_no: &str) -> Option<Trade> {
        let mut inner = self.inner.lock().unwrap();
        let trade = inner.trades.get_mut(out_trade_no)?;
        if trade.status != "WAIT_BUYER_PAY" {
            return None;
        }
        trade.scanned = true;
        trade.status = "TRADE_SUCCESS".to_owned();
        trade.trade_no = Some(format!("2026{}", random(24).to_ascii_lowercase()));
        Some(trade.clone())
    }

    /// The customer pays and Alipay notifies ordo: ordo's answer (status, body).
    pub async fn pay(&self, out_trade_no: &str) -> Option<super::Sent> {
        let trade = self.pay_quietly(out_trade_no)?;
        let body = self.notification(&trade, &Tweak::default());
        Some(
            super::post(
                &trade.notify_url,
                &[(
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
                )],
                body.into_bytes(),
            )
            .await,
        )
    }

    /// The notification of a paid trade, form-encoded and signed, with `tweak` applied.
    pub fn notification(&self, trade: &Trade, tweak: &Tweak) -> String {
        let now = china_time(self.clock.now());
        let mut params: BTreeMap<String, String> = [
            ("notify_time", now.clone()),
            ("notify_type", "trade_status_sync".to_owned()),
            ("notify_id", random(32)),
            (
                "app_id",
                tweak.app_id.clone().unwrap_or_else(|| APP_ID.to_owned()),
            ),
            ("charset", "utf-8".to_owned()),
            ("version", "1.0".to_owned()),
            ("trade_no", trade.trade_no.clone().unwrap_or_default()),
            ("out_trade_no", trade.out_trade_no.clone()),
            ("trade_status", "TRADE_SUCCESS".to_owned()),
            (
                "total_amount",
                tweak
                    .total_amount
                    .clone()
                    .unwrap_or_else(|| trade.total_amount.clone()),
            ),
            ("receipt_amount", trade.total_amount.clone()),
            ("buyer_pay_amount", trade.total_amount.clone()),
            ("seller_id", SELLER_ID.to_owned()),
            ("subject", trade.subject.clone()),
            ("gmt_create", now.clone()),
            ("gmt_payment", now),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let content = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut sign = self.alipay.sign(content.as_bytes());
        if tweak.bad_signature {
            sign = self.app.sign(content.as_bytes());
        }
        if tweak.tamper_after_signing {
            params.insert("total_amount".to_owned(), "0.01".to_owned());
        }
        params.insert("sign".to_owned(), sign);
        params.insert("sign_type".to_owned(), "RSA2".to_owned());
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            form.append_pair(k, v);
        }
        form.finish()
    }

    /// An answer: `{"<method>_response": node, "sign": …}`, signed over the node's bytes.
    fn answer(&self, method: &str, node: &Value, fault: Option<Fault>) -> Response {
        let node = node.to_string();
        let mut sign = self.alipay.sign(node.as_bytes());
        if fault == Some(Fault::BadSignature) {
            sign = self.app.sign(node.as_bytes());
        }
        let key = format!("{}_response", method.replace('.', "_"));
        let body = format!("{{\"{key}\":{node},\"sign\":\"{sign}\"}}");
        (
            StatusCode::OK,
            [("Content-Type", "text/html;charset=utf-8")],
            body,
        )
            .into_response()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tweak {
    pub bad_signature: bool,
    pub tamper_after_signing: bool,
    pub app_id: Option<String>,
    pub total_amount: Option<String>,
}

fn china_time(ms: i64) -> String {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&offset)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn business_error(sub_code: &str, sub_msg: &str) -> Value {
    json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})
}

async fn gateway(State(double): State<AlipayDouble>, uri: Uri, body: Bytes) -> Response {
    let fault = before_answer(&double.faults).await;
    if fault == Some(Fault::ServerError) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        params.insert(k.into_owned(), v.into_owned());
    }
    for (k, v) in form_urlencoded::parse(&body) {
        params.insert(k.into_owned(), v.into_owned());
    }
    let method = params.get("method").cloned().unwrap_or_default();
    let sign = params.remove("sign").unwrap_or_default();
    let content = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signed = verify(&double.app.public, content.as_bytes(), &sign)
        && params.get("app_id").map(String::as_str) == Some(APP_ID)
        && params.get("sign_type").map(String::as_str) == Some("RSA2");
    double.inner.lock().unwrap().seen.push(Seen {
        method: method.clone(),
        signed,
        params: params.clone(),
    });
    if !signed {
        let node = json!({"code": "40002", "msg": "Invalid Arguments",
                          "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"});
        return double.answer(&method, &node, fault);
    }
    let biz: Value = serde_json::from_str(
        params
            .get("biz_content")
            .map(String::as_str)
            .unwrap_or("{}"),
    )
    .unwrap_or_default();
    let otn = biz["out_trade_no"].as_str().unwrap_or_default().to_owned();
    let node = {
        let mut inner = double.inner.lock().unwrap();
        let refund_mode = inner.refund_mode.clone();
        let pay_first = inner.pay_before_close;
        let trades = &mut inner.trades;
        if pay_first
            && method == "alipay.trade.close"
            && let Some(trade) = trades.get_mut(&otn)
            && trade.status == "WAIT_BUYER_PAY"
        {
            trade.scanned = true;
            trade.status = "TRADE_SUCCESS".to_owned();
            trade.trade_no = Some(format!("2026{}", random(24).to_ascii_lowercase()));
        }
        match method.as_str() {
            "alipay.trade.precreate" => {
                let total = biz["total_amount"].as_str().unwrap_or_default().to_owned();
                let subject = biz["subject"].as_str().unwrap_or_default().to_owned();
                let time_expire = biz["time_expire"].as_str().unwrap_or_default().to_owned();
                let notify_url = params.get("notify_url").cloned().unwrap_or_default();
                let amount_ok = total.split_once('.').is_some_and(|(w, f)| {
                    !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) && f.len() == 2
                });
                if otn.is_empty()
                    || otn.len() > 64
                    || !otn.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    || !amount_ok
                    || subject.is_empty()
                    || chrono::NaiveDateTime::parse_from_str(&time_expire, "%Y-%m-%d %H:%M:%S")
                        .is_err()
                {
                    json!({"code": "40002", "msg": "Invalid Arguments",
                           "sub_code": "isv.invalid-parameter", "sub_msg": "参数无效"})
                } else {
                    let trade = trades.entry(otn.clone()).or_insert_with(|| Trade {
                        out_trade_no: otn.clone(),
                        total_amount: total.clone(),
                        subject,
                        time_expire,
                        notify_url,
                        qr_code: format!(
                            "https://qr.alipay.com/bax{}",
                            random(20).to_ascii_lowercase()
                        ),
                        scanned: false,
                        status: "WAIT_BUYER_PAY".to_owned(),
                        trade_no: None,
                        refunded: BTreeMap::new(),
                    });
                    if trade.status == "TRADE_SUCCESS" {
                        business_error("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
                    } else {
                        json!({"code": "10000", "msg": "Success", "out_trade_no": otn,
                               "qr_code": trade.qr_code})
                    }
                }
            }
            "alipay.trade.query" => match trades.get(&otn) {
                Some(trade) if trade.scanned => {
                    let mut node = json!({"code": "10000", "msg": "Success", "out_trade_no": otn,
                        "trade_status": trade.status, "total_amount": trade.total_amount});
                    if let Some(no) = &trade.trade_no {
                        node["trade_no"] = json!(no);
                        node["buyer_pay_amount"] = json!(trade.total_amount);
                    }
                    node
                }
                _ => {
                    let mut node = business_error("ACQ.TRADE_NOT_EXIST", "交易不存在");
                    node["out_trade_no"] = json!(otn);
                    node
                }
            },
            "alipay.trade.close" => match trades.get_mut(&otn) {
                Some(trade) if trade.scanned && trade.status == "WAIT_BUYER_PAY" => {
                    trade.status = "TRADE_CLOSED".to_owned();
                    json!({"code": "10000", "msg": "Success", "out_trade_no": otn,
                           "trade_no": trade.trade_no})
                }
                Some(trade) if trade.scanned => {
                    let mut node = business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法");
                    node["out_trade_no"] = json!(otn);
                    node
                }
                Some(trade) => {
                    // Never scanned: no trade to close; the QR code stops working.
                    trade.status = "TRADE_CLOSED".to_owned();
                    business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
                }
                None => business_error("ACQ.TRADE_NOT_EXIST", "交易不存在"),
            },
            "alipay.trade.refund" => {
                let number = biz["out_request_no"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let amount = biz["refund_amount"].as_str().unwrap_or_default().to_owned();
                match trades.get_mut(&otn) {
                    Some(trade)
                        if trade.status == "TRADE_SUCCESS"
                            || trade.refunded.contains_key(&number) =>
                    {
                        if trade.refunded.contains_key(&number) {
                            json!({"code": "10000", "msg": "Success", "out_trade_no": otn,
                                   "fund_change": "N", "refund_fee": amount})
                        } else if let RefundMode::Refuse(code) = &refund_mode {
                            business_error(code, "退款被拒绝")
                        } else if amount != trade.total_amount {
                            business_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
                        } else {
                            trade.refunded.insert(number, amount.clone());
                            trade.status = "TRADE_CLOSED".to_owned();
                            json!({"code": "10000", "msg": "Success", "out_trade_no": otn,
                                   "trade_no": trade.trade_no, "fund_change": "Y", "refund_fee": amount})
                        }
                    }
                    _ => business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
                }
            }
            "alipay.trade.fastpay.refund.query" => {
                let number = biz["out_request_no"].as_str().unwrap_or_default();
                match trades.get(&otn).and_then(|t| t.refunded.get(number)) {
                    Some(amount) => json!({"code": "10000", "msg": "Success", "out_trade_no": otn,
                        "out_request_no": number, "refund_amount": amount, "refund_status": "REFUND_SUCCESS"}),
                    None => json!({"code": "10000", "msg": "Success", "out_trade_no": otn,
                        "out_request_no": number}),
                }
            }
            _ => {
                json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method"})
            }
        }
    };
    double.answer(&method, &node, fault)
}

async fn control_pay(State(double): State<AlipayDouble>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let otn = request["out_trade_no"].as_str().unwrap_or_default();
    match double.pay(otn).await {
        Some(sent) => (
            StatusCode::OK,
            json!({"paid": otn, "ordo_answered": sent.status, "answer": sent.body}).to_string(),
        )
            .into_response(),
        None => (
            StatusCode::CONFLICT,
            json!({"error": format!("no unpaid trade {otn:?}")}).to_string(),
        )
            .into_response(),
    }
}

async fn control_list(State(double): State<AlipayDouble>) -> Response {
    let trades: Vec<Value> = double
        .inner
        .lock()
        .unwrap()
        .trades
        .values()
        .map(|t| {
            json!({"out_trade_no": t.out_trade_no, "total_amount": t.total_amount,
                        "status": t.status, "scanned": t.scanned, "qr_code": t.qr_code})
        })
        .collect();
    (StatusCode::OK, json!(trades).to_string()).into_response()
}
