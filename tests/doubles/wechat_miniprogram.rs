//! A double of WeChat's server API for mini-programs, the part ordo speaks: access tokens
//! (`POST /cgi-bin/stable_token`) and the shipping information service
//! (`POST /wxa/sec/order/upload_shipping_info?access_token=…`). It checks the AppID and
//! AppSecret before it hands out a token, every upload's token (unknown: 40001, expired:
//! 42001), and what an upload says: the order key (a transaction it knows, by WeChat Pay
//! transaction id, or by merchant and out_trade_no), the logistics type, the tracking
//! number, the carrier's code, the goods and the payer's openid, which must be the one that
//! paid. A payment is marked shipped once; another upload for it gets 10060002. It can be
//! made to refuse the next uploads (a WeChat error code), to fail (500), to stall, and to
//! forget its tokens.

use super::{Fault, SharedFaults, before_answer, random};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const APPID: &str = super::wechatpay::APPID;
pub const SECRET: &str = "ordoTestMiniProgramAppSecret0001";
/// How long a token lives, in seconds (WeChat's: 7200).
pub const TOKEN_SECONDS: i64 = 7200;
/// WeChat's codes carriers are known by (a part of `get_delivery_list`).
pub const CARRIERS: [&str; 8] = ["SF", "ZTO", "YTO", "YD", "STO", "JTSD", "JD", "EMS"];

/// A payment the double knows: it was paid through WeChat Pay by this payer.
#[derive(Debug, Clone, PartialEq)]
pub struct Paid {
    pub transaction_id: String,
    pub out_trade_no: String,
    pub openid: String,
}

/// An upload WeChat accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub transaction_id: String,
    pub body: Value,
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: Value,
    /// What the double answered (`errcode`).
    pub errcode: i64,
}

struct Inner {
    /// Token → when it expires (ms, by the double's clock).
    tokens: HashMap<String, i64>,
    /// The token handed out last and when it expires: `stable_token` hands it out again
    /// until then, unless asked to `force_refresh`.
    current: Option<(String, i64)>,
    paid: Vec<Paid>,
    accepted: BTreeMap<String, Accepted>,
    /// Error codes to answer the next uploads with.
    refusals: VecDeque<(i64, &'static str)>,
    seen: Vec<Seen>,
    token_requests: u32,
}

/// The double: its state and where it listens.
#[derive(Clone)]
pub struct MiniProgramDouble {
    pub base_url: String,
    pub faults: SharedFaults,
    clock: ordo::Clock,
    inner: Arc<Mutex<Inner>>,
    /// A WeChat Pay double whose paid transactions this one knows too.
    payments: Arc<Mutex<Option<super::wechatpay::WechatPayDouble>>>,
}

impl MiniProgramDouble {
    /// Starts a double on a free loopback port; `clock` is the time its tokens expire by.
    pub async fn start(clock: ordo::Clock) -> MiniProgramDouble {
        Self::start_on(clock, None).await
    }

    pub async fn start_on(clock: ordo::Clock, addr: Option<SocketAddr>) -> MiniProgramDouble {
        let mut double = MiniProgramDouble {
            base_url: String::new(),
            faults: Default::default(),
            clock,
            inner: Arc::new(Mutex::new(Inner {
                tokens: HashMap::new(),
                current: None,
                paid: Vec::new(),
                accepted: BTreeMap::new(),
                refusals: VecDeque::new(),
                seen: Vec::new(),
                token_requests: 0,
            })),
            payments: Arc::default(),
        };
        let router = Router::new()
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/wxa/sec/order/upload_shipping_info", post(upload))
            .with_state(double.clone());
        let addr = match addr {
            Some(addr) => super::serve_on(router, addr).await.expect("bind"),
            None => super::serve(router).await,
        };
        double.base_url = format!("http://{addr}");
        double
    }

    /// The settings ordo needs to speak to this double (besides WeChat Pay's AppID).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("wechat_app_secret", SECRET.to_owned()),
            ("wechat_api_base_url", self.base_url.clone()),
        ]
    }

    /// Tells the double of a payment made through WeChat Pay (as WeChat knows it).
    pub fn knows(&self, paid: Paid) {
        self.inner.lock().unwrap().paid.push(paid);
    }

    /// Knows every transaction `wechatpay` took money for, as WeChat does (for trying ordo
    /// by hand).
    pub fn beside(&self, wechatpay: super::wechatpay::WechatPayDouble) {
        *self.payments.lock().unwrap() = Some(wechatpay);
    }

    /// The payments WeChat Pay's double took, as this double knows them.
    fn paid_at_wechatpay(&self) -> Vec<Paid> {
        let Some(wechatpay) = self.payments.lock().unwrap().clone() else {
            return Vec::new();
        };
        wechatpay
            .txns()
            .into_iter()
            .filter_map(|t| {
                Some(Paid {
                    transaction_id: t.transaction_id?,
                    out_trade_no: t.out_trade_no,
                    openid: t.openid,
                })
            })
            .collect()
    }

    /// The next uploads are refused with these WeChat error codes.
    pub fn refuse_next(&self, codes: &[(i64, &'static str)]) {
        self.inner
            .lock()
            .unwrap()
            .refusals
            .extend(codes.iter().copied());
    }

    pub fn fail_next(&self, faults: &[Fault]) {
        self.faults
            .lock()
            .unwrap()
            .next
            .extend(faults.iter().copied());
    }

    pub fn set_delay(&self, delay: std::time::Duration) {
        self.faults.lock().unwrap().delay = delay;
    }

    /// WeChat forgets every token it gave (as when another server forced a new one).
    pub fn forget_tokens(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.tokens.clear();
        inner.current = None;
    }

    /// The uploads accepted, by transaction id.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.inner
            .lock()
            .unwrap()
            .accepted
            .values()
            .cloned()
            .collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// How many tokens were asked for.
    pub fn token_requests(&self) -> u32 {
        self.inner.lock().unwrap().token_requests
    }

    fn record(&self, path: &str, body: Value, errcode: i64) {
        self.inner.lock().unwrap().seen.push(Seen {
            path: path.to_owned(),
            body,
            errcode,
        });
    }
}

fn answer(errcode: i64, errmsg: &str) -> Response {
    (
        StatusCode::OK,
        [("Content-Type", "application/json; encoding=utf-8")],
        json!({"errcode": errcode, "errmsg": errmsg}).to_string(),
    )
        .into_response()
}

/// A fault before an answer: a server error, or nothing (let the handler answer).
async fn faulted(double: &MiniProgramDouble) -> Result<(), Response> {
    match before_answer(&double.faults).await {
        Some(Fault::ServerError) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response()),
        // An unreadable answer.
        Some(Fault::BadSignature) => Err((StatusCode::OK, "not json").into_response()),
        _ => Ok(()),
    }
}

async fn stable_token(State(double): State<MiniProgramDouble>, body: Bytes) -> Response {
    if let Err(r) = faulted(&double).await {
        return r;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let errcode = if request["grant_type"] != "client_credential" {
        40002
    } else if request["appid"] != APPID {
        40013
    } else if request["secret"] != SECRET {
        40125
    } else {
        0
    };
    let mut shown = request.clone();
    shown["secret"] = json!("<secret>");
    double.record("/cgi-bin/stable_token", shown, errcode);
    if errcode != 0 {
        return answer(errcode, "invalid credential");
    }
    let now = double.clock.now();
    let force = request["force_refresh"] == true;
    let mut inner = double.inner.lock().unwrap();
    inner.token_requests += 1;
    let (token, expires) = match inner.current.clone() {
        Some((token, expires)) if expires > now && !force => (token, expires),
        _ => {
            let token = format!("ACCESS_TOKEN_{}", random(24));
            let expires = now + TOKEN_SECONDS * 1000;
            if force {
                inner.tokens.clear();
            }
            inner.tokens.insert(token.clone(), expires);
            inner.current = Some((token.clone(), expires));
            (token, expires)
        }
    };
    (
        StatusCode::OK,
        [("Content-Type", "application/json; encoding=utf-8")],
        json!({"access_token": token, "expires_in": (expires - now) / 1000}).to_string(),
    )
        .into_response()
}

/// Why an upload is refused, if it is: WeChat's code and message.
fn check_upload(double: &MiniProgramDouble, body: &Value) -> Result<Paid, (i64, &'static str)> {
    let elsewhere = double.paid_at_wechatpay();
    let inner = double.inner.lock().unwrap();
    let known: Vec<&Paid> = inner.paid.iter().chain(elsewhere.iter()).collect();
    let key = &body["order_key"];
    let paid = match key["order_number_type"].as_i64() {
        Some(2) => {
            let id = key["transaction_id"].as_str().unwrap_or_default();
            if id.is_empty() {
                return Err((268485195, "微信支付单号形式错误"));
            }
            known.iter().find(|p| p.transaction_id == id)
        }
        Some(1) => {
            if key["mchid"] != super::wechatpay::MCHID {
                return Err((268485197, "商户号形式错误"));
            }
            let otn = key["out_trade_no"].as_str().unwrap_or_default();
            known.iter().find(|p| p.out_trade_no == otn)
        }
        _ => return Err((10060014, "参数错误 order_number_type")),
    };
    let Some(paid) = paid.map(|p| (*p).clone()) else {
        return Err((10060001, "支付单不存在"));
    };
    if body["logistics_type"] != 1 {
        return Err((10060005, "物流类型有误"));
    }
    if body["delivery_mode"] != 1 {
        return Err((268485224, "发货模式非法"));
    }
    let list = body["shipping_list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if list.len() != 1 {
        return Err((10060014, "参数错误 shipping_list"));
    }
    let shipment = &list[0];
    let tracking = shipment["tracking_no"].as_str().unwrap_or_default();
    if tracking.is_empty() || tracking.len() > 128 {
        return Err((10060026, "物流单号不合法"));
    }
    let company = shipment["express_company"].as_str().unwrap_or_default();
    if !CARRIERS.contains(&company) {
        return Err((10060025, "物流公司编码不合法"));
    }
    let desc = shipment["item_desc"].as_str().unwrap_or_default();
    if desc.is_empty() {
        return Err((10060008, "商品描述不能为空"));
    }
    if desc.chars().count() > 120 {
        return Err((10060009, "商品描述过长"));
    }
    if company == "SF"
        && shipment["contact"]["receiver_contact"]
            .as_str()
            .is_none_or(|c| !c.contains("****"))
    {
        return Err((10060014, "顺丰快递需填写联系方式"));
    }
    let upload_time = body["upload_time"].as_str().unwrap_or_default();
    if chrono::DateTime::parse_from_rfc3339(upload_time).is_err() {
        return Err((268485216, "上传时间非法"));
    }
    if body["payer"]["openid"] != paid.openid.as_str() {
        return Err((10060031, "该笔支付单不属于openid对应的用户"));
    }
    if inner.accepted.contains_key(&paid.transaction_id) {
        return Err((10060002, "支付单已完成发货，无法继续发货"));
    }
    Ok(paid)
}

async fn upload(
    State(double): State<MiniProgramDouble>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(r) = faulted(&double).await {
        return r;
    }
    let path = "/wxa/sec/order/upload_shipping_info";
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        double.record(path, Value::Null, 47001);
        return answer(47001, "data format error");
    };
    let token = query.get("access_token").cloned().unwrap_or_default();
    let expires = double.inner.lock().unwrap().tokens.get(&token).copied();
    let refused = match expires {
        None => Some((
            40001,
            "invalid credential, access_token is invalid or not latest",
        )),
        Some(at) if at <= double.clock.now() => Some((42001, "access_token expired")),
        Some(_) => double.inner.lock().unwrap().refusals.pop_front(),
    };
    if let Some((code, message)) = refused {
        double.record(path, body, code);
        return answer(code, message);
    }
    match check_upload(&double, &body) {
        Ok(paid) => {
            double.inner.lock().unwrap().accepted.insert(
                paid.transaction_id.clone(),
                Accepted {
                    transaction_id: paid.transaction_id,
                    body: body.clone(),
                },
            );
            double.record(path, body, 0);
            answer(0, "ok")
        }
        Err((code, message)) => {
            double.record(path, body, code);
            answer(code, message)
        }
    }
}
