//! Test doubles of the payment providers ordo speaks to: WeChat Pay v3, Alipay's gateway and
//! Stripe. Each speaks its provider's documented protocol over real HTTP, with keys made at
//! start: it checks the signature of every request ordo sends (a request that fails is
//! refused as the provider refuses it), signs its own answers and notifications, keeps the
//! state of every transaction and refund, and can be made to fail (server errors, answers
//! too slow, answers whose signature does not verify), to answer slowly, to "lose"
//! notifications, and to forge them. The integration tests drive them in process;
//! `cargo run --example provider-double -- wechatpay` starts one by hand.
//!
//! They share no code with ordo's own provider modules: signatures are made and checked
//! with the `rsa` crate and AES-GCM with `aes-gcm`, so a mistake in ordo is not mirrored here.

#![allow(dead_code)]
// Handlers answer early with an axum Response as their error.
#![allow(clippy::result_large_err)]

pub mod alipay;
pub mod stripe;
pub mod wechat_miniprogram;
pub mod wechatpay;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// An RSA key pair made at start, with its PEM forms.
#[derive(Clone)]
pub struct KeyPair {
    pub private: RsaPrivateKey,
    pub public: RsaPublicKey,
    /// PKCS#8 `BEGIN PRIVATE KEY`.
    pub private_pem: String,
    /// SubjectPublicKeyInfo `BEGIN PUBLIC KEY`.
    pub public_pem: String,
    /// The same key for signing with ring, several times faster than the `rsa` crate: a
    /// double that answers hundreds of requests a second must not take the CPU ordo is
    /// measured on. (Requests are still checked with the `rsa` crate.)
    signer: std::sync::Arc<ring::signature::RsaKeyPair>,
}

impl KeyPair {
    pub fn generate() -> KeyPair {
        let mut rng = rsa::rand_core::OsRng;
        let private = RsaPrivateKey::new(&mut rng, 2048).expect("an RSA key");
        let public = RsaPublicKey::from(&private);
        let der = private.to_pkcs8_der().expect("PKCS#8");
        let signer = ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).expect("ring key");
        KeyPair {
            private_pem: private
                .to_pkcs8_pem(LineEnding::LF)
                .expect("PKCS#8")
                .to_string(),
            public_pem: public.to_public_key_pem(LineEnding::LF).expect("SPKI"),
            private,
            public,
            signer: std::sync::Arc::new(signer),
        }
    }

    /// The base64 RSA PKCS#1 v1.5 SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        let rng = ring::rand::SystemRandom::new();
        let mut signature = vec![0; self.signer.public().modulus_len()];
        self.signer
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &rng,
                message,
                &mut signature,
            )
            .expect("sign");
        BASE64.encode(signature)
    }

    /// The same signature made with the `rsa` crate (a check of the fast path above).
    pub fn sign_slowly(&self, message: &[u8]) -> String {
        let signer = SigningKey::<rsa::sha2::Sha256>::new(self.private.clone());
        BASE64.encode(signer.sign(message).to_bytes())
    }
}

/// Whether `signature_b64` is `key`'s RSA PKCS#1 v1.5 SHA-256 signature of `message`.
pub fn verify(key: &RsaPublicKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(bytes) = BASE64.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
        return false;
    };
    VerifyingKey::<rsa::sha2::Sha256>::new(key.clone())
        .verify(message, &signature)
        .is_ok()
}

/// A public key from a PEM SubjectPublicKeyInfo.
pub fn public_key(pem: &str) -> RsaPublicKey {
    RsaPublicKey::from_public_key_pem(pem).expect("a public key")
}

/// Keys are slow to make in a debug build: every double of a process takes them from this
/// pool, made once.
pub fn keys(n: usize) -> KeyPair {
    static POOL: OnceLock<Vec<KeyPair>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(KeyPair::generate))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("key thread"))
            .collect()
    });
    pool[n % pool.len()].clone()
}

/// What a double does to the next requests ordo sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A 500 (the provider's own error body).
    ServerError,
    /// No answer for this long (longer than ordo waits).
    Stall(Duration),
    /// A 2xx whose signature does not verify (WeChat Pay, Alipay), or an unreadable body
    /// (Stripe).
    BadSignature,
}

/// The faults to come, and the latency of every answer.
#[derive(Debug, Default)]
pub struct Faults {
    pub next: VecDeque<Fault>,
    /// Every request, until cleared.
    pub always: Option<Fault>,
    /// Added to every answer.
    pub delay: Duration,
}

impl Faults {
    pub fn take(&mut self) -> Option<Fault> {
        self.next.pop_front().or(self.always)
    }
}

/// Shared handle to a double's faults.
pub type SharedFaults = Arc<Mutex<Faults>>;

/// Applies the delay, and a stall if that is the fault: returns the fault to answer with.
pub async fn before_answer(faults: &SharedFaults) -> Option<Fault> {
    let (fault, delay) = {
        let mut f = faults.lock().unwrap();
        (f.take(), f.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(Fault::Stall(how_long)) = fault {
        tokio::time::sleep(how_long).await;
    }
    fault
}

/// Serves `router` on a free loopback port.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Serves `router` on `addr` (the example double, started by hand).
pub async fn serve_on(router: axum::Router, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

/// A notification as sent: where, headers, body; and what the receiver answered.
#[derive(Debug, Clone)]
pub struct Sent {
    pub status: u16,
    pub body: String,
}

/// POSTs a notification.
pub async fn post(url: &str, headers: &[(String, String)], body: Vec<u8>) -> Sent {
    ordo::install_tls_provider();
    let client = reqwest::Client::new();
    let mut request = client.post(url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => Sent {
            status: response.status().as_u16(),
            body: response.text().await.unwrap_or_default(),
        },
        Err(err) => Sent {
            status: 0,
            body: err.to_string(),
        },
    }
}

/// A random string of letters and digits.
pub fn random(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a key file");
    path.display().to_string()
}
