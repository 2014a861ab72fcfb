//! WeChat Pay API v3, for a direct merchant paying through JSAPI (a mini-program, or the
//! WeChat browser). Every request is signed with the merchant key (`Authorization:
//! WECHATPAY2-SHA256-RSA2048 …` over `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`); every
//! answer and notification is believed only once its `Wechatpay-Signature` verifies with the
//! WeChat Pay public key named by `Wechatpay-Serial`, within five minutes of its timestamp.
//! Notifications carry their transaction encrypted (AEAD_AES_256_GCM with the APIv3 key).
//! An error answer is never signed by WeChat, so it is never taken for a fact: at most a
//! hint that a signed answer must confirm.

use super::keys::{self, PrivateKey, PublicKey};
use super::provider::{
    Acknowledgement, CloseOutcome, Http, Notification, NotificationKind, OpenRequest, Opened,
    Provider, ProviderError, RefundOutcome, RefundRef, RefundRequest, Refusal, TxnState,
    china_time, header, nonce, out_trade_no, read_answer, unreachable,
};
use crate::domain::{Millis, Payment, PaymentProvider};
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

const KIND: PaymentProvider = PaymentProvider::Wechatpay;
const SIGNATURE_TYPE: &str = "WECHATPAY2-SHA256-RSA2048";
/// How far an answer's or a notification's timestamp may be from ordo's clock.
const WINDOW_SECONDS: i64 = 300;

/// A merchant's WeChat Pay settings, keys loaded.
#[derive(Clone)]
pub struct WechatPayConfig {
    pub mchid: String,
    pub appid: String,
    /// Serial number of the merchant API certificate.
    pub serial_no: String,
    pub private_key: PrivateKey,
    /// The APIv3 key: 32 bytes.
    pub api_v3_key: [u8; 32],
    pub public_key: PublicKey,
    /// `PUB_KEY_ID_…`.
    pub public_key_id: String,
    pub base_url: String,
}

impl std::fmt::Debug for WechatPayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayConfig")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("serial_no", &self.serial_no)
            .field("public_key_id", &self.public_key_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct WechatPay {
    config: WechatPayConfig,
}

impl WechatPay {
    pub fn new(config: WechatPayConfig) -> WechatPay {
        WechatPay { config }
    }

    /// The `Authorization` header of one request.
    fn authorization(&self, method: &str, path_query: &str, body: &[u8], now: Millis) -> String {
        let timestamp = now.div_euclid(1000);
        let nonce = nonce(32);
        let mut message = format!("{method}\n{path_query}\n{timestamp}\n{nonce}\n").into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        let signature = self.config.private_key.sign(&message);
        format!(
            "{SIGNATURE_TYPE} mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
            self.config.mchid, self.config.serial_no
        )
    }

    /// Checks the signature headers of an answer or a notification over `body`.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: Millis) -> Result<(), String> {
        let serial = header(headers, "wechatpay-serial").ok_or("no Wechatpay-Serial")?;
        if serial != self.config.public_key_id {
            return Err(format!("unknown Wechatpay-Serial {serial:?}"));
        }
        if let Some(kind) = header(headers, "wechatpay-signature-type")
            && kind != SIGNATURE_TYPE
        {
            return Err(format!("unsupported Wechatpay-Signature-Type {kind:?}"));
        }
        let timestamp = header(headers, "wechatpay-timestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or("no readable Wechatpay-Timestamp")?;
        if (now.div_euclid(1000) - timestamp).abs() >= WINDOW_SECONDS {
            return Err("Wechatpay-Timestamp is more than 5 minutes away".to_owned());
        }
        let nonce = header(headers, "wechatpay-nonce").ok_or("no Wechatpay-Nonce")?;
        let signature = header(headers, "wechatpay-signature").ok_or("no Wechatpay-Signature")?;
        let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        if !self.config.public_key.verify(&message, signature) {
            return Err("the signature does not verify".to_owned());
        }
        Ok(())
    }

    /// Sends one signed request and reads the answer: a verified 2xx, or an error.
    async fn send(
        &self,
        http: &Http,
        method: reqwest::Method,
        path_query: &str,
        body: Option<Value>,
    ) -> Result<Answer, ProviderError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let raw: &[u8] = body.as_deref().unwrap_or_default();
        let authorization = self.authorization(method.as_str(), path_query, raw, http.now());
        let mut request = http
            .client
            .request(
                method,
                format!("{}{path_query}", self.config.base_url.trim_end_matches('/')),
            )
            .header("Authorization", authorization)
            .header("Accept", "application/json")
            .header("Wechatpay-Serial", &self.config.public_key_id);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| unreachable(KIND, &e))?;
        let (status, headers, body) = read_answer(KIND, response).await?;
        let verified = self.verify(&headers, &body, http.now());
        if (200..300).contains(&status) {
            verified.map_err(|detail| ProviderError::Unverifiable {
                provider: KIND,
                detail,
            })?;
            return Ok(Answer {
                status,
                body,
                signed: true,
                code: None,
            });
        }
        let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let code = error.code.unwrap_or_default();
        let detail = format!(
            "HTTP {status} {code} {}",
            error
                .message
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        );
        if status == 429 || status >= 500 {
            return Err(ProviderError::Unreachable {
                provider: KIND,
                detail,
            });
        }
        Ok(Answer {
            status,
            body,
            signed: verified.is_ok(),
            code: Some(code),
        })
    }

    fn erring(answer: &Answer) -> ProviderError {
        ProviderError::Erring {
            provider: KIND,
            detail: format!(
                "HTTP {} {}",
                answer.status,
                answer.code.as_deref().unwrap_or_default()
            ),
        }
    }

    fn transaction(&self, body: &[u8], out_trade_no: &str) -> Result<Transaction, ProviderError> {
        let txn: Transaction =
            serde_json::from_slice(body).map_err(|e| ProviderError::Unverifiable {
                provider: KIND,
                detail: format!("an unreadable transaction: {e}"),
            })?;
        let mismatch = |what: &str| ProviderError::Unverifiable {
            provider: KIND,
            detail: format!("the transaction names another {what}"),
        };
        if txn.mchid != self.config.mchid {
            return Err(mismatch("merchant"));
        }
        if txn.appid != self.config.appid {
            return Err(mismatch("app"));
        }
        if txn.out_trade_no != out_trade_no {
            return Err(mismatch("out_trade_no"));
        }
        Ok(txn)
    }

    fn refund_outcome(refund: RefundBody) -> RefundOutcome {
        let refund_id = refund.refund_id.unwrap_or_default();
        match refund.status.as_deref().unwrap_or_default() {
            "SUCCESS" => RefundOutcome::Succeeded { refund_id },
            "PROCESSING" => RefundOutcome::Processing { refund_id },
            other => RefundOutcome::Refused {
                reason: format!("WeChat Pay: refund {other}"),
                final_at_provider: true,
            },
        }
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
    /// Whether its signature verified (always, for a 2xx).
    signed: bool,
    code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Transaction {
    mchid: String,
    appid: String,
    out_trade_no: String,
    #[serde(default)]
    transaction_id: Option<String>,
    trade_state: String,
    #[serde(default)]
    amount: Option<TransactionAmount>,
    #[serde(default)]
    payer: Option<Payer>,
}

#[derive(Debug, Deserialize)]
struct TransactionAmount {
    total: i64,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Payer {
    #[serde(default)]
    openid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundBody {
    #[serde(default)]
    refund_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    id: String,
    event_type: String,
    resource: Resource,
}

#[derive(Debug, Deserialize)]
struct Resource {
    algorithm: String,
    ciphertext: String,
    nonce: String,
    #[serde(default)]
    associated_data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundResource {
    mchid: String,
    out_refund_no: String,
    #[serde(default)]
    refund_id: Option<String>,
    refund_status: String,
}

impl Transaction {
    fn state(self) -> Result<TxnState, ProviderError> {
        let state = self.trade_state.clone();
        Ok(match state.as_str() {
            // REFUND: paid, and refunded since; the money was taken all the same.
            "SUCCESS" | "REFUND" => {
                let amount = self.amount.ok_or(ProviderError::Unverifiable {
                    provider: KIND,
                    detail: "a paid transaction without an amount".to_owned(),
                })?;
                TxnState::Paid {
                    txn_id: self.transaction_id.unwrap_or_default(),
                    amount_minor: amount.total,
                    currency: amount.currency.unwrap_or_else(|| "CNY".to_owned()),
                    state,
                }
            }
            "NOTPAY" => TxnState::Unpaid { state },
            "USERPAYING" | "ACCEPT" => TxnState::Paying { state },
            "CLOSED" | "REVOKED" | "PAYERROR" => TxnState::Closed { state },
            other => {
                return Err(ProviderError::Erring {
                    provider: KIND,
                    detail: format!("an unknown trade_state {other:?}"),
                });
            }
        })
    }
}

impl Provider for WechatPay {
    fn kind(&self) -> PaymentProvider {
        KIND
    }

    fn open<'a>(
        &'a self,
        http: &'a Http,
        request: OpenRequest<'a>,
    ) -> BoxFuture<'a, Result<Opened, ProviderError>> {
        Box::pin(async move {
            let out_trade_no = out_trade_no(KIND, request.payment)?.to_owned();
            let openid = request.openid.ok_or(ProviderError::Erring {
                provider: KIND,
                detail: "JSAPI needs the payer's openid".to_owned(),
            })?;
            let notify_url = request.notify_url.ok_or(ProviderError::Erring {
                provider: KIND,
                detail: "public_url is not set, so there is no notify_url".to_owned(),
            })?;
            let description: String = request.description.chars().take(127).collect();
            let body = json!({
                "appid": self.config.appid,
                "mchid": self.config.mchid,
                "description": description,
                "out_trade_no": out_trade_no,
                "time_expire": china_time(request.payment.expires_at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                "notify_url": notify_url,
                "amount": {"total": request.payment.amount_cents, "currency": "CNY"},
                "payer": {"openid": openid},
            });
            let answer = self
                .send(
                    http,
                    reqwest::Method::POST,
                    "/v3/pay/transactions/jsapi",
                    Some(body),
                )
                .await?;
            if answer.code.is_some() {
                return Err(Self::erring(&answer));
            }
            #[derive(Deserialize)]
            struct Prepay {
                prepay_id: String,
            }
            let prepay: Prepay =
                serde_json::from_slice(&answer.body).map_err(|e| ProviderError::Unverifiable {
                    provider: KIND,
                    detail: format!("an unreadable prepay answer: {e}"),
                })?;
            Ok(Opened {
                provider_ref: out_trade_no,
                client: json!({"prepay_id": prepay.prepay_id}),
                state: "NOTPAY".to_owned(),
            })
        })
    }

    /// `wx.requestPayment`'s parameters, signed with the merchant key over
    /// `appId\ntimeStamp\nnonceStr\npackage\n`.
    fn client(&self, stored: &Value, now: Millis) -> Value {
        let prepay_id = stored["prepay_id"].as_str().unwrap_or_default();
        let time_stamp = now.div_euclid(1000).to_string();
        let nonce_str = nonce(32);
        let package = format!("prepay_id={prepay_id}");
        let message = format!(
            "{}\n{time_stamp}\n{nonce_str}\n{package}\n",
            self.config.appid
        );
        json!({
            "appId": self.config.appid,
            "timeStamp": time_stamp,
            "nonceStr": nonce_str,
            "package": package,
            "signType": "RSA",
            "paySign": self.config.private_key.sign(message.as_bytes()),
        })
    }

    fn query<'a>(
        &'a self,
        http: &'a Http,
        payment: &'a Payment,
    ) -> BoxFuture<'a, Result<TxnState, ProviderError>> {
        Box::pin(async move {
            let out_trade_no = out_trade_no(KIND, payment)?;
            let path = format!(
                "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
                self.config.mchid
            );
            let answer = self.send(http, reqwest::Method::GET, &path, None).await?;
            match answer.code.as_deref() {
                None => self.transaction(&answer.body, out_trade_no)?.state(),
                Some("ORDER_NOT_EXIST" | "ORDERNOTEXIST") if answer.signed => Ok(TxnState::Missing),
                Some(_) => Err(Self::erring(&answer)),
            }
        })
    }

    fn close<'a>(
        &'a self,
        http: &'a Http,
        payment: &'a Payment,
    ) -> BoxFuture<'a, Result<CloseOutcome, ProviderError>> {
        Box::pin(async move {
            let out_trade_no = out_trade_no(KIND, payment)?;
            let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
            let answer = self
                .send(
                    http,
                    reqwest::Method::POST,
                    &path,
                    Some(json!({"mchid": self.config.mchid})),
                )
                .await?;
            match answer.code.as_deref() {
                None if answer.status == 204 || answer.status == 200 => Ok(CloseOutcome::Closed),
                // Only a hint: the caller confirms it with a signed query.
                Some("ORDERPAID" | "ORDER_PAID") => Ok(CloseOutcome::AlreadyPaid),
                _ => Err(Self::erring(&answer)),
            }
        })
    }

    fn refund<'a>(
        &'a self,
        http: &'a Http,
        request: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            let out_trade_no = out_trade_no(KIND, request.payment)?;
            let mut body = json!({
                "out_trade_no": out_trade_no,
                "out_refund_no": request.out_refund_no,
                "reason": request.reason.chars().take(80).collect::<String>(),
                "amount": {"refund": request.payment.amount_cents,
                           "total": request.payment.amount_cents, "currency": "CNY"},
            });
            if let Some(url) = request.notify_url {
                body["notify_url"] = json!(url);
            }
            let answer = self
                .send(
                    http,
                    reqwest::Method::POST,
                    "/v3/refund/domestic/refunds",
                    Some(body),
                )
                .await?;
            match answer.code {
                None => {
                    let refund: RefundBody = serde_json::from_slice(&answer.body).map_err(|e| {
                        ProviderError::Unverifiable {
                            provider: KIND,
                            detail: format!("an unreadable refund answer: {e}"),
                        }
                    })?;
                    Ok(Self::refund_outcome(refund))
                }
                // Refused before a refund was made: the same out_refund_no may be tried again.
                Some(code) => Ok(RefundOutcome::Refused {
                    reason: format!("WeChat Pay: HTTP {} {code}", answer.status),
                    final_at_provider: false,
                }),
            }
        })
    }

    fn query_refund<'a>(
        &'a self,
        http: &'a Http,
        request: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            let path = format!("/v3/refund/domestic/refunds/{}", request.out_refund_no);
            let answer = self.send(http, reqwest::Method::GET, &path, None).await?;
            match answer.code.as_deref() {
                None => {
                    let refund: RefundBody = serde_json::from_slice(&answer.body).map_err(|e| {
                        ProviderError::Unverifiable {
                            provider: KIND,
                            detail: format!("an unreadable refund answer: {e}"),
                        }
                    })?;
                    Ok(Self::refund_outcome(refund))
                }
                Some("RESOURCE_NOT_EXISTS") if answer.signed => Ok(RefundOutcome::NotFound),
                Some(_) => Err(Self::erring(&answer)),
            }
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
        let envelope: Envelope = serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("not a WeChat Pay notification: {e}")))?;
        if envelope.resource.algorithm != "AEAD_AES_256_GCM" {
            return Err(Refusal::Malformed(format!(
                "resource.algorithm {:?} is not AEAD_AES_256_GCM",
                envelope.resource.algorithm
            )));
        }
        let plain = keys::aes_256_gcm_open(
            &self.config.api_v3_key,
            envelope.resource.nonce.as_bytes(),
            envelope
                .resource
                .associated_data
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
            &envelope.resource.ciphertext,
        )
        .ok_or_else(|| Refusal::Malformed("the resource cannot be decrypted".to_owned()))?;
        let unreadable = |e: serde_json::Error| Refusal::Malformed(format!("the resource: {e}"));
        let kind = match envelope.event_type.as_str() {
            "TRANSACTION.SUCCESS" => {
                let txn: Transaction = serde_json::from_slice(&plain).map_err(unreadable)?;
                if txn.mchid != self.config.mchid {
                    return Err(Refusal::Mismatch(format!("mchid {:?}", txn.mchid)));
                }
                if txn.appid != self.config.appid {
                    return Err(Refusal::Mismatch(format!("appid {:?}", txn.appid)));
                }
                let provider_ref = txn.out_trade_no.clone();
                let payer = txn.payer.as_ref().and_then(|p| p.openid.clone());
                match txn.state() {
                    Ok(TxnState::Paid {
                        txn_id,
                        amount_minor,
                        currency,
                        state,
                    }) => NotificationKind::PaymentSucceeded {
                        provider_ref,
                        txn_id,
                        amount_minor,
                        currency,
                        state,
                        payer,
                    },
                    Ok(other) => NotificationKind::Ignored {
                        what: format!("TRANSACTION.SUCCESS with trade_state {}", other.label()),
                    },
                    Err(err) => return Err(Refusal::Malformed(err.to_string())),
                }
            }
            "REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED" => {
                let refund: RefundResource = serde_json::from_slice(&plain).map_err(unreadable)?;
                if refund.mchid != self.config.mchid {
                    return Err(Refusal::Mismatch(format!("mchid {:?}", refund.mchid)));
                }
                if refund.refund_status == "SUCCESS" {
                    NotificationKind::RefundSucceeded {
                        refund: RefundRef::OutRefundNo(refund.out_refund_no),
                        refund_id: refund.refund_id,
                    }
                } else {
                    NotificationKind::RefundFailed {
                        refund: RefundRef::OutRefundNo(refund.out_refund_no),
                        reason: format!("WeChat Pay: refund {}", refund.refund_status),
                    }
                }
            }
            other => NotificationKind::Ignored {
                what: other.to_owned(),
            },
        };
        Ok(Notification {
            event_id: envelope.id,
            kind,
        })
    }

    fn acknowledge(&self, result: Result<(), &Refusal>) -> Acknowledgement {
        match result {
            Ok(()) => Acknowledgement::text(204, ""),
            Err(refusal) => {
                let status = match refusal {
                    Refusal::NotAuthentic(_) | Refusal::NotConfigured(_) => 401,
                    Refusal::Malformed(_) | Refusal::Mismatch(_) => 400,
                    Refusal::Unavailable(_) => 503,
                };
                Acknowledgement::json(
                    status,
                    json!({"code": "FAIL", "message": refusal.to_string()}),
                )
            }
        }
    }
}
