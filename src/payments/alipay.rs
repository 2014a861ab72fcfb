//! Alipay's OpenAPI gateway (`gateway.do`, RSA2 in public-key mode): a QR code to scan
//! (`alipay.trade.precreate`), then `alipay.trade.query`, `.close`, `.refund` and
//! `.fastpay.refund.query`. Requests are signed with the app's private key over the sorted
//! `key=value` parameters; an answer is believed only when the signature over the exact
//! bytes of its `…_response` object verifies with Alipay's public key (an unsigned answer is
//! at most an error). Notifications are form posts signed the same way (without `sign` and
//! `sign_type`); their answer is the text `success`. Times are China Standard Time, amounts
//! yuan with two decimals.

use super::keys::{PrivateKey, PublicKey};
use super::provider::{
    Acknowledgement, CloseOutcome, Http, Notification, NotificationKind, OpenRequest, Opened,
    Provider, ProviderError, RefundOutcome, RefundRef, RefundRequest, Refusal, TxnState,
    china_time, out_trade_no, read_answer, unreachable,
};
use crate::domain::{Millis, Payment, PaymentProvider};
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

const KIND: PaymentProvider = PaymentProvider::Alipay;
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

#[derive(Clone)]
pub struct AlipayConfig {
    pub app_id: String,
    pub private_key: PrivateKey,
    /// Alipay's public key (not the app's).
    pub alipay_public_key: PublicKey,
    pub gateway_url: String,
}

impl std::fmt::Debug for AlipayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayConfig")
            .field("app_id", &self.app_id)
            .field("gateway_url", &self.gateway_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Alipay {
    config: AlipayConfig,
}

/// Yuan with two decimals, as Alipay writes amounts.
pub fn yuan(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Cents of an amount in yuan (`"12.00"`, `"12.5"`, `"12"`).
pub fn parse_yuan(text: &str) -> Option<i64> {
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 2 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let cents = format!("{fraction:0<2}").parse::<i64>().ok()?;
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

/// The string Alipay signs: `key=value` pairs sorted by key, joined with `&`, empty values
/// left out.
pub fn sign_content(params: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = params.iter().filter(|(_, v)| !v.is_empty()).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The raw text of the JSON object that is the value of `key` at the top of `body`, found
/// by matching braces outside strings, so that it can be verified byte for byte.
pub fn raw_object<'b>(body: &'b str, key: &str) -> Option<&'b str> {
    let quoted = format!("\"{key}\"");
    let at = body.find(&quoted)? + quoted.len();
    let rest = &body[at..];
    let colon = rest.find(':')?;
    if !rest[..colon].trim().is_empty() {
        return None;
    }
    let open = colon + rest[colon..].find('{')?;
    if !rest[colon + 1..open].trim().is_empty() {
        return None;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in rest[open..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[open..open + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

/// A verified (or, for errors, merely read) answer's `…_response` object.
struct Answer {
    node: Value,
    signed: bool,
}

impl Answer {
    fn code(&self) -> &str {
        self.node["code"].as_str().unwrap_or_default()
    }

    fn sub_code(&self) -> &str {
        self.node["sub_code"].as_str().unwrap_or_default()
    }

    fn text(&self, key: &str) -> Option<String> {
        self.node[key].as_str().map(str::to_owned)
    }

    fn error(&self) -> ProviderError {
        let detail = format!(
            "{} {} {}",
            self.code(),
            self.sub_code(),
            self.node["sub_msg"]
                .as_str()
                .or(self.node["msg"].as_str())
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        );
        if matches!(self.code(), "20000") || self.sub_code() == "ACQ.SYSTEM_ERROR" {
            ProviderError::Unreachable {
                provider: KIND,
                detail,
            }
        } else {
            ProviderError::Erring {
                provider: KIND,
                detail,
            }
        }
    }
}

impl Alipay {
    pub fn new(config: AlipayConfig) -> Alipay {
        Alipay { config }
    }

    /// Calls one method; the answer's signature is verified before anything is read of it.
    async fn call(
        &self,
        http: &Http,
        method: &str,
        biz: Value,
        notify_url: Option<String>,
    ) -> Result<Answer, ProviderError> {
        let mut params: Vec<(String, String)> = vec![
            ("app_id".into(), self.config.app_id.clone()),
            ("method".into(), method.into()),
            ("format".into(), "JSON".into()),
            ("charset".into(), "utf-8".into()),
            ("sign_type".into(), "RSA2".into()),
            (
                "timestamp".into(),
                china_time(http.now()).format(TIME_FORMAT).to_string(),
            ),
            ("version".into(), "1.0".into()),
        ];
        if let Some(url) = notify_url {
            params.push(("notify_url".into(), url));
        }
        let biz_content = biz.to_string();
        params.push(("biz_content".into(), biz_content.clone()));
        let sign = self
            .config
            .private_key
            .sign(sign_content(&params).as_bytes());
        let query: Vec<(String, String)> = params
            .into_iter()
            .filter(|(k, _)| k != "biz_content")
            .chain([("sign".to_owned(), sign)])
            .collect();
        let url =
            reqwest::Url::parse_with_params(&self.config.gateway_url, &query).map_err(|e| {
                ProviderError::Erring {
                    provider: KIND,
                    detail: format!("alipay_gateway_url: {e}"),
                }
            })?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("biz_content", &biz_content)
            .finish();
        let response = http
            .client
            .post(url)
            .header(
                "Content-Type",
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| unreachable(KIND, &e))?;
        let (status, _, body) = read_answer(KIND, response).await?;
        if !(200..300).contains(&status) {
            return Err(if status == 429 || status >= 500 {
                ProviderError::Unreachable {
                    provider: KIND,
                    detail: format!("HTTP {status}"),
                }
            } else {
                ProviderError::Erring {
                    provider: KIND,
                    detail: format!("HTTP {status}"),
                }
            });
        }
        self.read(method, &body)
    }

    fn read(&self, method: &str, body: &[u8]) -> Result<Answer, ProviderError> {
        let unverifiable = |detail: &str| ProviderError::Unverifiable {
            provider: KIND,
            detail: detail.to_owned(),
        };
        let text = std::str::from_utf8(body).map_err(|_| unverifiable("an answer not in UTF-8"))?;
        let document: Value =
            serde_json::from_str(text).map_err(|_| unverifiable("an answer that is not JSON"))?;
        let key = format!("{}_response", method.replace('.', "_"));
        let (key, raw) = match raw_object(text, &key) {
            Some(raw) => (key, raw),
            None => (
                "error_response".to_owned(),
                raw_object(text, "error_response")
                    .ok_or_else(|| unverifiable("an answer without a response object"))?,
            ),
        };
        let node = document[&key].clone();
        let signed = match document["sign"].as_str() {
            Some(sign) => {
                let good = self.config.alipay_public_key.verify(raw.as_bytes(), sign)
                    || (raw.contains("\\/")
                        && self
                            .config
                            .alipay_public_key
                            .verify(raw.replace("\\/", "/").as_bytes(), sign));
                if !good {
                    return Err(unverifiable("the answer's signature does not verify"));
                }
                true
            }
            None => false,
        };
        let answer = Answer { node, signed };
        if answer.code() == "10000" && !answer.signed {
            return Err(unverifiable("an unsigned success"));
        }
        Ok(answer)
    }

    /// A verified answer about another trade is not an answer about this one.
    fn same_trade(answer: &Answer, out_trade_no: &str) -> Result<(), ProviderError> {
        match answer.node["out_trade_no"].as_str() {
            Some(other) if other != out_trade_no => Err(ProviderError::Unverifiable {
                provider: KIND,
                detail: format!("the answer is about trade {other:?}"),
            }),
            _ => Ok(()),
        }
    }
}

impl Provider for Alipay {
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
            let subject: String = request
                .description
                .chars()
                .filter(|c| !matches!(c, '/' | '=' | '&'))
                .take(256)
                .collect();
            let biz = json!({
                "out_trade_no": out_trade_no,
                "total_amount": yuan(request.payment.amount_cents),
                "subject": subject,
                "time_expire": china_time(request.payment.expires_at).format(TIME_FORMAT).to_string(),
            });
            let answer = self
                .call(http, "alipay.trade.precreate", biz, request.notify_url)
                .await?;
            if answer.code() != "10000" || !answer.signed {
                return Err(answer.error());
            }
            Self::same_trade(&answer, &out_trade_no)?;
            let qr_code = answer.text("qr_code").ok_or(ProviderError::Unverifiable {
                provider: KIND,
                detail: "a precreate answer without qr_code".to_owned(),
            })?;
            Ok(Opened {
                provider_ref: out_trade_no,
                client: json!({"qr_code": qr_code}),
                state: "WAIT_BUYER_PAY".to_owned(),
            })
        })
    }

    fn query<'a>(
        &'a self,
        http: &'a Http,
        payment: &'a Payment,
    ) -> BoxFuture<'a, Result<TxnState, ProviderError>> {
        Box::pin(async move {
            let out_trade_no = out_trade_no(KIND, payment)?;
            let answer = self
                .call(
                    http,
                    "alipay.trade.query",
                    json!({"out_trade_no": out_trade_no}),
                    None,
                )
                .await?;
            if !answer.signed {
                return Err(answer.error());
            }
            Self::same_trade(&answer, out_trade_no)?;
            if answer.code() != "10000" {
                return match answer.sub_code() {
                    // Precreate makes no trade: it is made when the QR code is scanned.
                    "ACQ.TRADE_NOT_EXIST" => Ok(TxnState::Missing),
                    _ => Err(answer.error()),
                };
            }
            let state = answer.text("trade_status").unwrap_or_default();
            Ok(match state.as_str() {
                "TRADE_SUCCESS" | "TRADE_FINISHED" => TxnState::Paid {
                    txn_id: answer.text("trade_no").unwrap_or_default(),
                    amount_minor: answer
                        .text("total_amount")
                        .as_deref()
                        .and_then(parse_yuan)
                        .ok_or(ProviderError::Unverifiable {
                            provider: KIND,
                            detail: "a paid trade without a readable total_amount".to_owned(),
                        })?,
                    currency: "CNY".to_owned(),
                    state,
                },
                "WAIT_BUYER_PAY" => TxnState::Unpaid { state },
                "TRADE_CLOSED" => TxnState::Closed { state },
                other => {
                    return Err(ProviderError::Erring {
                        provider: KIND,
                        detail: format!("an unknown trade_status {other:?}"),
                    });
                }
            })
        })
    }

    fn close<'a>(
        &'a self,
        http: &'a Http,
        payment: &'a Payment,
    ) -> BoxFuture<'a, Result<CloseOutcome, ProviderError>> {
        Box::pin(async move {
            let out_trade_no = out_trade_no(KIND, payment)?;
            let answer = self
                .call(
                    http,
                    "alipay.trade.close",
                    json!({"out_trade_no": out_trade_no}),
                    None,
                )
                .await?;
            if !answer.signed {
                return Err(answer.error());
            }
            match (answer.code(), answer.sub_code()) {
                ("10000", _) => Ok(CloseOutcome::Closed),
                // Never scanned: there is no trade to pay, and the QR code has expired.
                (_, "ACQ.TRADE_NOT_EXIST") => Ok(CloseOutcome::Closed),
                // Paid, or closed already: the caller asks which.
                (_, "ACQ.TRADE_STATUS_ERROR") => Ok(CloseOutcome::AlreadyPaid),
                _ => Err(answer.error()),
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
            let answer = self
                .call(
                    http,
                    "alipay.trade.refund",
                    json!({
                        "out_trade_no": out_trade_no,
                        "refund_amount": yuan(request.payment.amount_cents),
                        "out_request_no": request.out_refund_no,
                        "refund_reason": request.reason.chars().take(256).collect::<String>(),
                    }),
                    None,
                )
                .await?;
            if answer.code() == "10000" {
                // `fund_change` N is also the answer to a number already refunded: ask.
                return if answer.text("fund_change").as_deref() == Some("Y") {
                    Ok(RefundOutcome::Succeeded {
                        refund_id: request.out_refund_no.to_owned(),
                    })
                } else {
                    Ok(RefundOutcome::Processing {
                        refund_id: request.out_refund_no.to_owned(),
                    })
                };
            }
            match answer.error() {
                ProviderError::Erring { detail, .. } => Ok(RefundOutcome::Refused {
                    reason: format!("Alipay: {detail}"),
                    final_at_provider: false,
                }),
                err => Err(err),
            }
        })
    }

    fn query_refund<'a>(
        &'a self,
        http: &'a Http,
        request: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            let out_trade_no = out_trade_no(KIND, request.payment)?;
            let answer = self
                .call(
                    http,
                    "alipay.trade.fastpay.refund.query",
                    json!({"out_trade_no": out_trade_no, "out_request_no": request.out_refund_no}),
                    None,
                )
                .await?;
            if answer.code() != "10000" || !answer.signed {
                return Err(answer.error());
            }
            Ok(match answer.text("refund_status").as_deref() {
                Some("REFUND_SUCCESS") => RefundOutcome::Succeeded {
                    refund_id: request.out_refund_no.to_owned(),
                },
                // No refund_status: the refund never arrived, or failed: send it again.
                _ => RefundOutcome::NotFound,
            })
        })
    }

    fn read_notification(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        _now: Millis,
    ) -> Result<Notification, Refusal> {
        let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let sign = get("sign").ok_or_else(|| Refusal::NotAuthentic("no sign".to_owned()))?;
        let signed: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "sign" && k != "sign_type")
            .cloned()
            .collect();
        let mut sorted: Vec<&(String, String)> = signed.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let content = sorted
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        if !self
            .config
            .alipay_public_key
            .verify(content.as_bytes(), sign)
        {
            return Err(Refusal::NotAuthentic(
                "the signature does not verify".to_owned(),
            ));
        }
        let required = |key: &str| {
            get(key)
                .map(str::to_owned)
                .ok_or_else(|| Refusal::Malformed(format!("no {key}")))
        };
        let app_id = required("app_id")?;
        if app_id != self.config.app_id {
            return Err(Refusal::Mismatch(format!("app_id {app_id:?}")));
        }
        let out_trade_no = required("out_trade_no")?;
        let trade_no = required("trade_no")?;
        let status = get("trade_status").unwrap_or_default().to_owned();
        let kind = if let (Some(out_biz_no), Some(_)) = (get("out_biz_no"), get("refund_fee")) {
            NotificationKind::RefundSucceeded {
                refund: RefundRef::OutRefundNo(out_biz_no.to_owned()),
                refund_id: Some(out_biz_no.to_owned()),
            }
        } else {
            match status.as_str() {
                "TRADE_SUCCESS" | "TRADE_FINISHED" => NotificationKind::PaymentSucceeded {
                    provider_ref: out_trade_no,
                    txn_id: trade_no.clone(),
                    amount_minor: required("total_amount")
                        .ok()
                        .as_deref()
                        .and_then(parse_yuan)
                        .ok_or_else(|| Refusal::Malformed("no readable total_amount".to_owned()))?,
                    currency: "CNY".to_owned(),
                    state: status.clone(),
                    payer: None,
                },
                other => NotificationKind::Ignored {
                    what: format!("trade_status {other:?}"),
                },
            }
        };
        let event_id = match &kind {
            NotificationKind::RefundSucceeded {
                refund: RefundRef::OutRefundNo(number),
                ..
            } => format!("{trade_no}:refund:{number}"),
            _ => format!("{trade_no}:{status}"),
        };
        Ok(Notification { event_id, kind })
    }

    fn acknowledge(&self, result: Result<(), &Refusal>) -> Acknowledgement {
        match result {
            Ok(()) => Acknowledgement::text(200, "success"),
            Err(Refusal::Unavailable(_)) => Acknowledgement::text(503, "fail"),
            Err(Refusal::NotAuthentic(_) | Refusal::NotConfigured(_)) => {
                Acknowledgement::text(401, "fail")
            }
            Err(_) => Acknowledgement::text(400, "fail"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_yuan() {
        assert_eq!(yuan(1200), "12.00");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(parse_yuan("12.00"), Some(1200));
        assert_eq!(parse_yuan("12.5"), Some(1250));
        assert_eq!(parse_yuan("12"), Some(1200));
        assert_eq!(parse_yuan("0.01"), Some(1));
        for bad in ["", "1.234", "-1.00", "1e3", "a.00", ".5", "1.x"] {
            assert_eq!(parse_yuan(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_signed_object_is_found_byte_for_byte() {
        let body = r#"{"alipay_trade_query_response":{"code":"10000","msg":"a } \" {","n":{"x":1}},"sign":"abc"}"#;
        assert_eq!(
            raw_object(body, "alipay_trade_query_response"),
            Some(r#"{"code":"10000","msg":"a } \" {","n":{"x":1}}"#)
        );
        assert_eq!(raw_object(body, "error_response"), None);
        assert_eq!(raw_object(r#"{"k": {"a":1}}"#, "k"), Some(r#"{"a":1}"#));
        assert_eq!(raw_object(r#"{"k": 5}"#, "k"), None);
    }

    #[test]
    fn sign_content_sorts_and_skips_empty_values() {
        let params = vec![
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
            ("c".to_owned(), String::new()),
        ];
        assert_eq!(sign_content(&params), "a=1&b=2");
    }
}
