//! WeChat's shipping information service (README: WeChat shipping information). A
//! mini-program shop must tell WeChat when it ships an order paid through WeChat Pay JSAPI
//! (`upload_shipping_info`), or WeChat holds the merchant's funds. With `wechat_app_secret`
//! set, shipping such an order writes an upload in the shipping transaction (the outbox);
//! a worker beside the webhook dispatcher sends it, never inside a transaction, through the
//! providers' gate (bounded concurrency and time), and retries it on the webhooks' schedule
//! until WeChat accepts it. The access token comes from `stable_token` and is kept until a
//! little before it expires. Staff see each upload's state on the order page and can send
//! it again (audited).

use super::provider::{Http, Operation, ProviderError, china_time, read_answer, unreachable};
use crate::Ordo;
use crate::audit::{self, Object};
use crate::db;
use crate::domain::address::masked_phone;
use crate::domain::{
    Actor, Millis, Order, OrderItem, Payment, PaymentProvider, PaymentStatus, time::serde_rfc3339,
};
use crate::error::{Error, Result};
use crate::events::dispatch::{RETRY_SCHEDULE_S, jittered};
use crate::scheduler::Shutdown;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The metric label of WeChat's server API.
const SERVICE: &str = "wechat";
/// Uploads claimed (and attempted at once) per round.
const BATCH: i64 = 32;
/// How often the worker looks for uploads coming due (retries, other processes' ships).
const POLL: Duration = Duration::from_secs(1);
/// An access token is renewed this long before WeChat says it expires.
const TOKEN_MARGIN_MS: Millis = 5 * 60_000;
/// WeChat's longest goods description.
const MAX_ITEM_DESC: usize = 120;

/// What ordo needs to speak to WeChat's server API.
#[derive(Clone)]
pub struct WechatShippingConfig {
    /// The mini-program's AppID (`wechatpay_appid`).
    pub appid: String,
    /// Its AppSecret (`wechat_app_secret`).
    pub secret: String,
    /// `wechat_api_base_url`.
    pub base_url: String,
    /// The merchant (`wechatpay_mchid`), for payments known only by out_trade_no.
    pub mchid: Option<String>,
}

impl std::fmt::Debug for WechatShippingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatShippingConfig")
            .field("appid", &self.appid)
            .field("base_url", &self.base_url)
            .field("mchid", &self.mchid)
            .finish_non_exhaustive()
    }
}

/// The client of WeChat's shipping information service, with its cached access token.
#[derive(Debug)]
pub struct WechatShipping {
    config: WechatShippingConfig,
    /// The token and when ordo stops using it (a little before WeChat's expiry).
    token: std::sync::Mutex<Option<(String, Millis)>>,
    /// Held while a token is fetched, so that concurrent uploads fetch one.
    fetching: tokio::sync::Mutex<()>,
    /// WeChat refused the cached token: the next one is asked for with `force_refresh`.
    stale: AtomicBool,
    /// Wakes this process's worker after a commit that shipped an order.
    due: tokio::sync::Notify,
}

/// What WeChat said to an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadAnswer {
    Accepted,
    /// Refused, with WeChat's code and message.
    Refused {
        errcode: i64,
        errmsg: String,
    },
}

/// WeChat's codes that mean the access token is no good: invalid, expired, not the
/// latest.
const TOKEN_CODES: [i64; 3] = [40001, 40014, 42001];
/// WeChat's codes that mean it has this order's shipping information already: the
/// payment is marked shipped (10060002), or the same information was sent again
/// (10060023). An earlier attempt whose answer was lost got through.
const ALREADY_THERE: [i64; 2] = [10060002, 10060023];

#[derive(Debug, Default, Deserialize)]
struct ApiAnswer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    expires_in: Option<i64>,
}

fn api_error(detail: String) -> ProviderError {
    ProviderError::Erring {
        provider: PaymentProvider::Wechatpay,
        detail,
    }
}

impl WechatShipping {
    pub fn new(config: WechatShippingConfig) -> WechatShipping {
        WechatShipping {
            config,
            token: std::sync::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            stale: AtomicBool::new(false),
            due: tokio::sync::Notify::new(),
        }
    }

    /// Wakes this process's upload worker.
    pub fn wake(&self) {
        self.due.notify_one();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    async fn post(&self, http: &Http, url: &str, body: &Value) -> Result<ApiAnswer, ProviderError> {
        let response = http
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| unreachable(PaymentProvider::Wechatpay, &e))?;
        let (status, _, body) = read_answer(PaymentProvider::Wechatpay, response).await?;
        if !(200..300).contains(&status) {
            return Err(ProviderError::Unreachable {
                provider: PaymentProvider::Wechatpay,
                detail: format!("WeChat API: HTTP {status}"),
            });
        }
        serde_json::from_slice(&body).map_err(|_| ProviderError::Unverifiable {
            provider: PaymentProvider::Wechatpay,
            detail: format!(
                "WeChat API: an unreadable answer: {}",
                super::provider::excerpt(&body)
            ),
        })
    }

    /// The cached access token, or a new one from `stable_token`.
    pub async fn access_token(&self, http: &Http) -> Result<String, ProviderError> {
        let fresh = |now: Millis| {
            self.token
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .filter(|(_, until)| *until > now)
                .map(|(token, _)| token.clone())
        };
        if !self.stale.load(Ordering::Acquire)
            && let Some(token) = fresh(http.now())
        {
            return Ok(token);
        }
        let _one = self.fetching.lock().await;
        // Another upload may have fetched it while this one waited.
        if !self.stale.load(Ordering::Acquire)
            && let Some(token) = fresh(http.now())
        {
            return Ok(token);
        }
        let force = self.stale.load(Ordering::Acquire);
        let answer = self
            .post(
                http,
                &self.url("/cgi-bin/stable_token"),
                &json!({"grant_type": "client_credential", "appid": self.config.appid,
                        "secret": self.config.secret, "force_refresh": force}),
            )
            .await?;
        let (Some(token), Some(expires_in)) = (answer.access_token, answer.expires_in) else {
            return Err(api_error(format!(
                "WeChat API: no access token: {} {}",
                answer.errcode, answer.errmsg
            )));
        };
        let lifetime = expires_in.max(1) * 1000;
        let margin = TOKEN_MARGIN_MS.min(lifetime / 2);
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((token.clone(), http.now() + lifetime - margin));
        self.stale.store(false, Ordering::Release);
        Ok(token)
    }

    /// Uploads one order's shipping information.
    pub async fn upload(&self, http: &Http, body: &Value) -> Result<UploadAnswer, ProviderError> {
        let token = self.access_token(http).await?;
        let mut url = reqwest::Url::parse(&self.url("/wxa/sec/order/upload_shipping_info"))
            .map_err(|e| api_error(format!("WeChat API: a bad URL: {e}")))?;
        url.query_pairs_mut().append_pair("access_token", &token);
        let answer = self.post(http, url.as_str(), body).await?;
        if answer.errcode == 0 || ALREADY_THERE.contains(&answer.errcode) {
            return Ok(UploadAnswer::Accepted);
        }
        if TOKEN_CODES.contains(&answer.errcode) {
            self.stale.store(true, Ordering::Release);
        }
        Ok(UploadAnswer::Refused {
            errcode: answer.errcode,
            errmsg: answer.errmsg.chars().take(200).collect(),
        })
    }
}

/// WeChat's code of a carrier (its `delivery_id`): the common Chinese carriers by name,
/// anything else as it was written.
pub fn express_company(carrier: &str) -> String {
    let name = carrier.trim();
    let known: [(&[&str], &str); 11] = [
        (&["顺丰", "顺丰速运", "sf", "sf express", "shunfeng"], "SF"),
        (&["中通", "中通快递", "zto"], "ZTO"),
        (&["圆通", "圆通速递", "yto"], "YTO"),
        (&["韵达", "韵达速递", "韵达快递", "yd", "yunda"], "YD"),
        (&["申通", "申通快递", "sto"], "STO"),
        (&["极兔", "极兔速递", "j&t", "jtsd"], "JTSD"),
        (&["京东", "京东物流", "京东快递", "jd"], "JD"),
        (
            &["邮政", "中国邮政", "ems", "邮政ems", "中国邮政ems"],
            "EMS",
        ),
        (&["德邦", "德邦快递", "dbl", "debang"], "DBL"),
        (&["百世", "百世快递", "htky"], "HTKY"),
        (&["dhl"], "DHL"),
    ];
    let lower = name.to_lowercase();
    known
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map_or_else(|| name.to_owned(), |(_, code)| (*code).to_owned())
}

/// The goods, as WeChat shows them to the payer: each name and quantity, at most 120
/// characters.
fn item_desc(items: &[OrderItem]) -> String {
    let text = items
        .iter()
        .map(|i| {
            if i.quantity == 1 {
                i.name.clone()
            } else {
                format!("{} ×{}", i.name, i.quantity)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let text = if text.trim().is_empty() {
        "goods".to_owned()
    } else {
        text
    };
    if text.chars().count() <= MAX_ITEM_DESC {
        text
    } else {
        let mut cut: String = text.chars().take(MAX_ITEM_DESC - 1).collect();
        cut.push('…');
        cut
    }
}

/// The payment an order's shipping is reported for: the WeChat Pay JSAPI payment that
/// paid it.
pub(crate) fn paying_wechat_payment(payments: &[Payment]) -> Option<&Payment> {
    payments.iter().find(|p| {
        p.provider == PaymentProvider::Wechatpay
            && p.status == PaymentStatus::Succeeded
            && !p.refund_required
    })
}

/// The body of `upload_shipping_info` for a shipped order, or why it cannot be made.
pub(crate) fn upload_body(
    order: &Order,
    items: &[OrderItem],
    payment: &Payment,
    openid: Option<&str>,
    mchid: Option<&str>,
    now: Millis,
) -> std::result::Result<Value, String> {
    let order_key = match (&payment.provider_txn_id, &payment.merchant_ref, mchid) {
        (Some(txn), _, _) => json!({"order_number_type": 2, "transaction_id": txn}),
        (None, Some(out_trade_no), Some(mchid)) => {
            json!({"order_number_type": 1, "mchid": mchid, "out_trade_no": out_trade_no})
        }
        _ => return Err("the payment has no WeChat transaction id".to_owned()),
    };
    let openid = openid.ok_or("the payer's openid is not known")?;
    let (Some(carrier), Some(tracking)) = (&order.carrier, &order.tracking_number) else {
        return Err("the order has no carrier and tracking number".to_owned());
    };
    let mut shipment = json!({
        "tracking_no": tracking,
        "express_company": express_company(carrier),
        "item_desc": item_desc(items),
    });
    if let Some(address) = order.shipping_address.as_ref().filter(|a| !a.erased) {
        // SF Express needs a contact; WeChat takes it masked.
        shipment["contact"] = json!({"receiver_contact": masked_phone(&address.phone)});
    }
    Ok(json!({
        "order_key": order_key,
        "logistics_type": 1,
        "delivery_mode": 1,
        "shipping_list": [shipment],
        "upload_time": china_time(now).to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        "payer": {"openid": openid},
    }))
}

/// An order's upload as the API and the console show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ShippingUpload {
    pub order_id: i64,
    /// `pending` (due), `failed` (refused or unreachable; will retry), `succeeded`
    /// (accepted by WeChat) or `dead` (retries exhausted; staff may try again).
    pub status: String,
    pub attempts: i64,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Millis>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_attempt_at: Option<Millis>,
    /// What WeChat (or the way to it) said the last time it did not accept.
    pub last_error: Option<String>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<Millis>,
}

impl From<db::shipping::UploadRow> for ShippingUpload {
    fn from(row: db::shipping::UploadRow) -> Self {
        ShippingUpload {
            order_id: row.order_id,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_attempt_at: row.last_attempt_at,
            last_error: row.last_error,
            accepted_at: row.accepted_at,
        }
    }
}

/// The next state of an upload after its `attempt`th attempt failed at `at`.
fn after_failure(attempt: i64, at: Millis) -> (&'static str, Option<Millis>) {
    match RETRY_SCHEDULE_S.get((attempt - 1).max(0) as usize) {
        Some(delay) => ("failed", Some(at + jittered(delay * 1000))),
        None => ("dead", None),
    }
}

impl Ordo {
    /// In the shipping transaction: records the upload of an order paid through WeChat Pay
    /// JSAPI, when the shop reports shipments to WeChat.
    pub(crate) async fn record_shipping_upload(
        &self,
        conn: &mut db::Conn,
        order_id: i64,
        now: Millis,
    ) -> Result<bool> {
        if self.providers().shipping().is_none() {
            return Ok(false);
        }
        let payments = db::payments::for_order(conn, order_id).await?;
        let Some(payment) = paying_wechat_payment(&payments) else {
            return Ok(false);
        };
        db::shipping::insert(conn, order_id, payment.id, now).await?;
        Ok(true)
    }

    /// An order's upload to WeChat, if it has one (staff).
    pub async fn shipping_upload(
        &self,
        actor: Actor,
        order_id: i64,
    ) -> Result<Option<ShippingUpload>> {
        crate::auth::require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        Ok(db::shipping::of_order(&mut conn, order_id)
            .await?
            .map(ShippingUpload::from))
    }

    /// Staff send an order's shipping information to WeChat again now (audited).
    pub async fn retry_shipping_upload(
        &self,
        actor: Actor,
        order_id: i64,
    ) -> Result<ShippingUpload> {
        crate::auth::require_staff(actor)?;
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        if db::orders::get(&mut tx, order_id).await?.is_none() {
            return Err(Error::NotFound { what: "order" });
        }
        let upload = db::shipping::of_order(&mut tx, order_id)
            .await?
            .ok_or(Error::NotFound {
                what: "shipping upload",
            })?;
        if upload.status == "succeeded" {
            return Err(Error::Conflict(format!(
                "WeChat already accepted order {order_id}'s shipping information"
            )));
        }
        if !db::shipping::retry(&mut tx, order_id, now).await? {
            return Err(Error::Conflict(format!(
                "order {order_id}'s shipping information is being sent right now"
            )));
        }
        audit::record(
            &mut tx,
            actor,
            "order.wechat_shipping_retry",
            Object::Order(order_id),
            json!({"status": upload.status, "attempts": upload.attempts}),
            now,
        )
        .await?;
        let upload = db::shipping::of_order(&mut tx, order_id)
            .await?
            .ok_or(Error::NotFound {
                what: "shipping upload",
            })?;
        tx.commit().await?;
        if let Some(shipping) = self.providers().shipping() {
            shipping.wake();
        }
        Ok(upload.into())
    }

    /// One round of the upload worker: claims due uploads, sends them at once (through the
    /// providers' gate), records what WeChat said. Returns how many were attempted.
    pub async fn upload_shipping_once(&self) -> Result<usize> {
        let Some(shipping) = self.providers().shipping().cloned() else {
            return Ok(0);
        };
        let now = self.clock.now();
        let timeout_ms = self.providers().timeout().as_millis() as i64;
        // Long enough for a token and an upload, and their recording.
        let lease = now + 2 * timeout_ms + 5_000;
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let due = db::shipping::claim_due(&mut tx, dialect, BATCH, lease, now).await?;
        tx.commit().await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut prepared = Vec::with_capacity(due.len());
        {
            let mut conn = self.db.pool().acquire().await?;
            for upload in &due {
                prepared.push((
                    upload.clone(),
                    self.upload_of(&mut conn, upload, now).await?,
                ));
            }
        }
        let mut attempts = tokio::task::JoinSet::new();
        for (upload, body) in prepared {
            let ordo = self.clone();
            let shipping = shipping.clone();
            attempts.spawn(async move {
                let outcome = match body {
                    Ok(body) => {
                        let providers = ordo.providers();
                        providers
                            .gated(
                                PaymentProvider::Wechatpay,
                                SERVICE,
                                Operation::UploadShipping,
                                shipping.upload(providers.http(), &body),
                            )
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Err(why) => Err(why),
                };
                (upload, outcome, ordo.clock.now())
            });
        }
        let mut settled = Vec::new();
        while let Some(joined) = attempts.join_next().await {
            let Ok((upload, outcome, at)) = joined else {
                continue;
            };
            let attempt = upload.attempts + 1;
            let (status, next, error) = match outcome {
                Ok(UploadAnswer::Accepted) => ("succeeded", None, None),
                Ok(UploadAnswer::Refused { errcode, errmsg }) => {
                    let (status, next) = after_failure(attempt, at);
                    (
                        status,
                        next,
                        Some(format!("WeChat refused: {errcode} {errmsg}")),
                    )
                }
                Err(why) => {
                    let (status, next) = after_failure(attempt, at);
                    (status, next, Some(why))
                }
            };
            for outcome in ["succeeded", "failed", "dead"] {
                metrics::counter!("ordo_wechat_shipping_uploads_total", "outcome" => outcome)
                    .increment(u64::from(outcome == status));
            }
            if status != "succeeded" {
                tracing::warn!(order_id = upload.order_id, attempt, status, error = ?error, "WeChat did not take the shipping information");
            }
            settled.push(db::shipping::Settled {
                id: upload.id,
                status,
                next_attempt_at: next,
                error,
                attempted_at: at,
            });
        }
        let done = settled.len();
        let mut tx = self.db.write_tx().await?;
        db::shipping::settle(&mut tx, &settled, self.clock.now()).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// The body of one upload, read from the order as it is (its carrier and tracking
    /// number cannot change once shipped), or why there can be none.
    async fn upload_of(
        &self,
        conn: &mut db::Conn,
        upload: &db::shipping::UploadRow,
        now: Millis,
    ) -> Result<std::result::Result<Value, String>> {
        let Some(order) = db::orders::get(conn, upload.order_id).await? else {
            return Ok(Err("the order is gone".to_owned()));
        };
        let items = db::orders::items(conn, upload.order_id).await?;
        let Some(payment) = db::payments::get(conn, upload.payment_id).await? else {
            return Ok(Err("the payment is gone".to_owned()));
        };
        let openid = match &payment.payer_openid {
            Some(openid) => Some(openid.clone()),
            None => db::users::wechat_openid(conn, order.user_id).await?,
        };
        let mchid = self
            .providers()
            .shipping()
            .and_then(|s| s.config.mchid.clone());
        Ok(upload_body(
            &order,
            &items,
            &payment,
            openid.as_deref(),
            mchid.as_deref(),
            now,
        ))
    }
}

/// The upload worker of one process, until `shutdown`: a round whenever this process
/// ships an order or staff try again, and every second for retries coming due and other
/// processes' shipments.
pub async fn run(ordo: Ordo, shutdown: Shutdown) {
    let Some(shipping) = ordo.providers().shipping().cloned() else {
        return;
    };
    tracing::info!("WeChat shipping uploads started");
    let mut failures = 0u32;
    while !shutdown.is_triggered() {
        let pause = if !ordo.db.is_ready() {
            POLL
        } else {
            match ordo.upload_shipping_once().await {
                Ok(n) if n as i64 >= BATCH => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    POLL
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, "a round of WeChat shipping uploads failed");
                    Duration::from_millis(200 * u64::from(failures.min(25)))
                }
            }
        };
        tokio::select! {
            _ = shipping.due.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => break,
        }
    }
    tracing::info!("WeChat shipping uploads stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carriers_become_wechat_codes() {
        assert_eq!(express_company("顺丰速运"), "SF");
        assert_eq!(express_company(" zto "), "ZTO");
        assert_eq!(express_company("京东"), "JD");
        assert_eq!(express_company("DHL"), "DHL");
        assert_eq!(express_company("YUNDA"), "YD");
        assert_eq!(express_company("Local courier"), "Local courier");
    }

    #[test]
    fn the_goods_fit_wechat_s_description() {
        let item = |name: &str, quantity| OrderItem {
            product_id: 1,
            sku: "S".into(),
            name: name.into(),
            quantity,
            unit_price_cents: 100,
        };
        assert_eq!(
            item_desc(&[item("茶叶", 2), item("杯子", 1)]),
            "茶叶 ×2, 杯子"
        );
        let long = item_desc(&[item(&"长".repeat(300), 1)]);
        assert_eq!(long.chars().count(), MAX_ITEM_DESC);
    }

    #[test]
    fn failures_follow_the_webhook_schedule() {
        let (status, next) = after_failure(1, 0);
        assert_eq!(status, "failed");
        assert!((4_000..=6_000).contains(&next.unwrap()));
        assert_eq!(after_failure(10, 0), ("dead", None));
    }
}
