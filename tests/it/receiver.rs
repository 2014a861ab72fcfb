//! A webhook receiver on a random loopback port, for the events tests: it verifies every
//! signature with the reference `standardwebhooks` crate (not ordo's signing code),
//! records what arrived, and answers as told (fail N times, 410, slow).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request that reached the receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub signature: String,
    pub body: Value,
    pub raw: String,
    /// Which of the receiver's secrets verified it.
    pub verified_by: Vec<usize>,
    /// What the receiver answered.
    pub answered: u16,
}

impl Received {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }

    pub fn order_id(&self) -> Option<i64> {
        self.body["data"]["order"]["id"].as_i64()
    }

    pub fn seq(&self) -> Option<i64> {
        self.body["data"]["seq"].as_i64()
    }
}

/// How to answer the next request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    /// Answers 200 after a while (a receiver slower than the timeout).
    Slow(Duration),
}

#[derive(Default)]
struct Inner {
    secrets: Vec<String>,
    received: Vec<Received>,
    script: VecDeque<Reply>,
    /// Every n-th request fails with 500 (0: never).
    fail_every: usize,
    count: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            inner,
        }
    }

    /// Secrets to verify with; `verified_by` names them by index.
    pub fn trust(&self, secret: &str) {
        self.inner.lock().unwrap().secrets.push(secret.to_owned());
    }

    pub fn then(&self, replies: &[Reply]) {
        self.inner
            .lock()
            .unwrap()
            .script
            .extend(replies.iter().copied());
    }

    pub fn fail_every(&self, n: usize) {
        self.inner.lock().unwrap().fail_every = n;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// What was answered 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (reply, verified_by) = {
        let mut inner = inner.lock().unwrap();
        inner.count += 1;
        let verified_by = inner
            .secrets
            .iter()
            .enumerate()
            .filter(|(_, secret)| {
                standardwebhooks::Webhook::new(secret)
                    .map(|wh| wh.verify(&body, &headers).is_ok())
                    .unwrap_or(false)
            })
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        let reply = match inner.script.pop_front() {
            Some(reply) => reply,
            None if inner.fail_every > 0 && inner.count % inner.fail_every == 0 => {
                Reply::Status(500)
            }
            None => Reply::Status(200),
        };
        (reply, verified_by)
    };
    let answered = match reply {
        Reply::Status(s) | Reply::RetryAfter(s, _) => s,
        Reply::Slow(_) => 200,
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let raw = String::from_utf8_lossy(&body).into_owned();
    inner.lock().unwrap().received.push(Received {
        webhook_id: header("webhook-id"),
        signature: header("webhook-signature"),
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
        verified_by,
        answered,
    });
    let status = StatusCode::from_u16(answered).unwrap();
    match reply {
        Reply::Slow(wait) => {
            tokio::time::sleep(wait).await;
            (status, "late").into_response()
        }
        Reply::RetryAfter(_, seconds) => {
            (status, [("retry-after", seconds.to_string())], "busy").into_response()
        }
        Reply::Status(_) => (status, "ok").into_response(),
    }
}
