//! `manual`: ordo's own payment channel, for tests and for shops whose gateway is their
//! own. Nothing is opened anywhere and nobody is asked: the gateway reports each result to
//! `POST /api/v1/payments/webhook` as JSON signed with the shared webhook secret
//! (`X-Ordo-Signature`, the hex HMAC-SHA256 of the raw body), and a late payment's refund is
//! settled by staff (`refund-settled`).

use super::provider::{
    Acknowledgement, CloseOutcome, Http, Notification, OpenRequest, Opened, Provider,
    ProviderError, RefundOutcome, RefundRequest, Refusal, TxnState,
};
use crate::domain::{Millis, Payment, PaymentProvider};
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the hex HMAC-SHA256 of the raw body.
pub const SIGNATURE_HEADER: &str = "x-ordo-signature";

/// The hex HMAC-SHA256 of `body` under `secret`, as the gateway sends it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the signature in constant time.
pub fn verify(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

#[derive(Debug)]
pub struct Manual;

fn unsupported<T>(operation: &'static str) -> BoxFuture<'static, Result<T, ProviderError>>
where
    T: Send + 'static,
{
    Box::pin(async move {
        Err(ProviderError::Unsupported {
            provider: PaymentProvider::Manual,
            operation,
        })
    })
}

impl Provider for Manual {
    fn kind(&self) -> PaymentProvider {
        PaymentProvider::Manual
    }

    fn open<'a>(
        &'a self,
        _: &'a Http,
        _: OpenRequest<'a>,
    ) -> BoxFuture<'a, Result<Opened, ProviderError>> {
        unsupported("open")
    }

    fn query<'a>(
        &'a self,
        _: &'a Http,
        _: &'a Payment,
    ) -> BoxFuture<'a, Result<TxnState, ProviderError>> {
        unsupported("query")
    }

    fn close<'a>(
        &'a self,
        _: &'a Http,
        _: &'a Payment,
    ) -> BoxFuture<'a, Result<CloseOutcome, ProviderError>> {
        unsupported("close")
    }

    fn refund<'a>(
        &'a self,
        _: &'a Http,
        _: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        unsupported("refund")
    }

    fn query_refund<'a>(
        &'a self,
        _: &'a Http,
        _: RefundRequest<'a>,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        unsupported("query a refund")
    }

    fn read_notification(
        &self,
        _: &HeaderMap,
        _: &[u8],
        _: Millis,
    ) -> Result<Notification, Refusal> {
        Err(Refusal::Malformed(
            "manual payments report to POST /api/v1/payments/webhook".to_owned(),
        ))
    }

    fn acknowledge(&self, result: Result<(), &Refusal>) -> Acknowledgement {
        match result {
            Ok(()) => Acknowledgement::text(204, ""),
            Err(refusal) => {
                Acknowledgement::json(400, serde_json::json!({"error": refusal.to_string()}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let sig = sign(b"secret", b"{}");
        assert!(verify(b"secret", b"{}", &sig));
        assert!(!verify(b"secret", b"{ }", &sig));
        assert!(!verify(b"other", b"{}", &sig));
        assert!(!verify(b"secret", b"{}", "zz"));
        assert!(!verify(b"secret", b"{}", ""));
    }
}
