//! The HTTP API over real HTTP on a random port, on both databases.

use crate::helpers::{Backend, MINUTE, T0, TestShop};
use crate::on_both_databases;
use ordo::domain::UserRole;
use ordo::http::{AppState, sign_webhook};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const SECRET: &str = "test-webhook-secret";

/// A running server with its own database and a client.
pub struct TestApp {
    pub shop: TestShop,
    pub base: String,
    pub client: reqwest::Client,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |state| state).await
    }

    /// A server whose state `configure` adjusts (a rate limit, say).
    pub async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> TestApp {
        let shop = TestShop::new(backend).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut state = AppState::new(shop.ordo.clone()).with_webhook_secret(SECRET);
        state.sweep_batch_size = 100;
        let state = configure(state);
        tokio::spawn(ordo::http::serve(listener, state, std::future::pending()));
        TestApp {
            shop,
            base: format!("http://127.0.0.1:{port}"),
            client: crate::helpers::client(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let is_problem = response.headers().get("content-type").is_some_and(|v| {
            v.to_str()
                .unwrap_or("")
                .starts_with("application/problem+json")
        });
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_client_error() || status.is_server_error() {
            assert!(is_problem, "{status} without problem+json: {value}");
            assert!(
                value["code"].is_string() && value["detail"].is_string(),
                "{value}"
            );
            assert_eq!(value["status"], status.as_u16());
        }
        assert!(!status.is_server_error(), "5xx: {value}");
        (status, value)
    }

    /// Starts a real sweep over HTTP (202 with its location) and waits for its record to
    /// say it finished; returns the record.
    pub async fn sweep_and_wait(&self, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .post(format!("{}/api/v1/sweeps", self.base))
            .bearer_auth(&self.shop.staff_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location")
            .to_owned();
        let run: Value = response.json().await.unwrap();
        assert_eq!(location, format!("/api/v1/sweeps/{}", run["id"]));
        for _ in 0..200 {
            let (status, run) = self.call(Method::GET, &location, self.staff(), None).await;
            assert_eq!(status, StatusCode::OK, "{run}");
            if run["state"] != "running" {
                assert_eq!(run["state"], "finished", "{run}");
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the sweep did not finish");
    }

    /// Sends `body` as it is (JSON content type when not empty); the answer as JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if !body.is_empty() {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(!status.is_server_error(), "5xx: {text}");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn staff(&self) -> Option<&str> {
        Some(&self.shop.staff_token)
    }

    pub fn customer(&self) -> Option<&str> {
        Some(&self.shop.customer_token)
    }

    pub async fn create_product(&self, sku: &str, price: i64, stock: i64) -> i64 {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/products",
                self.staff(),
                Some(json!({"sku": sku, "name": "Widget", "price_cents": price, "currency": "EUR", "stock": stock})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    }

    pub async fn place(&self, items: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/api/v1/orders",
            self.customer(),
            Some(json!({"items": items})),
        )
        .await
    }

    pub async fn webhook(&self, body: &str, signature: Option<&str>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}/api/v1/payments/webhook", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = signature {
            request = request.header("X-Ordo-Signature", sig);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        assert!(!status.is_server_error(), "{value}");
        (status, value)
    }

    pub async fn pay(&self, payment: &Value, event_id: &str) -> (StatusCode, Value) {
        let body = json!({
            "event_id": event_id,
            "payment_id": payment["id"],
            "status": "succeeded",
            "amount_cents": payment["amount_cents"],
        })
        .to_string();
        let sig = sign_webhook(SECRET.as_bytes(), body.as_bytes());
        self.webhook(&body, Some(&sig)).await
    }

    pub async fn stock(&self, product: i64) -> i64 {
        let (_, p) = self
            .call(
                Method::GET,
                &format!("/api/v1/products/{product}"),
                self.customer(),
                None,
            )
            .await;
        p["stock"].as_i64().unwrap()
    }

    pub async fn moves(&self, order: i64) -> Vec<String> {
        let (status, history) = self
            .call(
                Method::GET,
                &format!("/api/v1/orders/{order}/history"),
                self.customer(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        history
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                format!(
                    "{}->{}",
                    h["from_status"].as_str().unwrap_or("none"),
                    h["to_status"].as_str().unwrap()
                )
            })
            .collect()
    }
}

on_both_databases!(
    every_lifecycle_path_through_the_api,
    idempotency_key_returns_the_same_order,
    webhook_signatures_replays_and_late_payments,
    hostile_input_gets_clear_problems,
    customers_see_only_their_own_orders,
    lists_paginate,
);

async fn every_lifecycle_path_through_the_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = app.create_product("LIFE-1", 500, 20).await;
    let post = |path: String, token: Option<&str>, body: Option<Value>| {
        let path = path.clone();
        let token = token.map(str::to_owned);
        let app = &app;
        async move { app.call(Method::POST, &path, token.as_deref(), body).await }
    };

    // pending -> paid -> shipped -> completed -> refunding -> refunded
    let (status, placed) = app.place(json!([{"product_id": p, "quantity": 2}])).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let id = placed["order"]["id"].as_i64().unwrap();
    assert_eq!(placed["order"]["status"], "pending");
    assert_eq!(placed["payment"]["status"], "pending");
    assert_eq!(app.stock(p).await, 18);
    let (status, outcome) = app.pay(&placed["payment"], "evt-life-1").await;
    assert_eq!(
        (status, outcome["outcome"].as_str()),
        (StatusCode::OK, Some("paid"))
    );
    let (status, order) = post(
        format!("/api/v1/orders/{id}/ship"),
        app.staff(),
        Some(json!({"carrier": "DHL", "tracking_number": "T1"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["carrier"], "DHL");
    let (status, order) = post(
        format!("/api/v1/orders/{id}/complete"),
        app.customer(),
        None,
    )
    .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("completed"))
    );
    let (_, product) = app
        .call(
            Method::GET,
            &format!("/api/v1/products/{p}"),
            app.customer(),
            None,
        )
        .await;
    assert_eq!(product["sales_count"], 2);
    let (status, order) = post(
        format!("/api/v1/orders/{id}/refund"),
        app.customer(),
        Some(json!({"reason": "broken"})),
    )
    .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("refunding"))
    );
    // The customer cannot approve their own refund.
    let (status, problem) = post(
        format!("/api/v1/orders/{id}/refund/approve"),
        app.customer(),
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, order) = post(
        format!("/api/v1/orders/{id}/refund/approve"),
        app.staff(),
        None,
    )
    .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("refunded"))
    );
    assert_eq!(order["payments"][0]["status"], "refunded");
    assert_eq!(app.stock(p).await, 20);
    assert_eq!(
        app.moves(id).await,
        [
            "none->pending",
            "pending->paid",
            "paid->shipped",
            "shipped->completed",
            "completed->refunding",
            "refunding->refunded"
        ]
    );

    // pending -> cancelled by the customer
    let (_, placed) = app.place(json!([{"product_id": p, "quantity": 3}])).await;
    let id = placed["order"]["id"].as_i64().unwrap();
    let (status, order) = post(
        format!("/api/v1/orders/{id}/cancel"),
        app.customer(),
        Some(json!({"reason": "oops"})),
    )
    .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    assert_eq!(order["cancel_reason"], "oops");
    assert_eq!(app.stock(p).await, 20);
    // A second cancel is an invalid transition naming the allowed moves (none).
    let (status, problem) = post(format!("/api/v1/orders/{id}/cancel"), app.customer(), None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_transition"))
    );
    assert_eq!(problem["allowed"], json!([]));

    // paid -> refunding -> paid (rejected) -> cancelled by staff
    let (_, placed) = app.place(json!([{"product_id": p, "quantity": 1}])).await;
    let id = placed["order"]["id"].as_i64().unwrap();
    app.pay(&placed["payment"], "evt-life-2").await;
    post(format!("/api/v1/orders/{id}/refund"), app.customer(), None).await;
    let (status, order) = post(
        format!("/api/v1/orders/{id}/refund/reject"),
        app.staff(),
        Some(json!({"reason": "used"})),
    )
    .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("paid"))
    );
    let (status, problem) = post(
        format!("/api/v1/orders/{id}/complete"),
        app.customer(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        problem["allowed"],
        json!(["shipped", "refunding", "cancelled"])
    );
    let (status, order) = post(format!("/api/v1/orders/{id}/cancel"), app.staff(), None).await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    assert_eq!(order["payments"][0]["refund_required"], true);

    // pending -> cancelled by the sweep (POST /sweeps), dry run first
    let (_, placed) = app.place(json!([{"product_id": p, "quantity": 4}])).await;
    let id = placed["order"]["id"].as_i64().unwrap();
    app.shop.ordo.clock.set(T0 + 31 * MINUTE);
    let (status, summary) = post(
        "/api/v1/sweeps".into(),
        app.staff(),
        Some(json!({"dry_run": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(
        (
            summary["would_cancel"].as_i64(),
            summary["cancelled"].as_i64()
        ),
        (Some(1), Some(0))
    );
    let (status, problem) = post("/api/v1/sweeps".into(), app.customer(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let summary = app.sweep_and_wait(None).await;
    assert_eq!(summary["cancelled"], 1);
    assert_eq!(summary["units_released"], 4);
    assert_eq!(summary["trigger"], "api");
    assert_eq!(summary["actor"], format!("user:{}", app.shop.staff.id));
    let (_, order) = app
        .call(
            Method::GET,
            &format!("/api/v1/orders/{id}"),
            app.customer(),
            None,
        )
        .await;
    assert_eq!(order["cancel_reason"], "payment timeout");
    assert_eq!(order["payments"][0]["status"], "expired");

    // The ledger, newest first, tells the whole story.
    let (status, ledger) = app
        .call(
            Method::GET,
            &format!("/api/v1/products/{p}/stock-movements?limit=200"),
            app.staff(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sum: i64 = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["delta"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, app.stock(p).await);
    let (status, adjusted) = post(
        format!("/api/v1/products/{p}/stock-adjustments"),
        app.staff(),
        Some(json!({"delta": -100, "reason": "lost"})),
    )
    .await;
    assert_eq!(
        (status, adjusted["code"].as_str()),
        (StatusCode::CONFLICT, Some("insufficient_stock"))
    );
    assert_eq!(adjusted["available"], 20);
    let (status, adjusted) = post(
        format!("/api/v1/products/{p}/stock-adjustments"),
        app.staff(),
        Some(json!({"delta": 5, "reason": "delivery"})),
    )
    .await;
    assert_eq!(
        (status, adjusted["stock"].as_i64()),
        (StatusCode::OK, Some(25))
    );
    app.shop.assert_check_clean().await;
}

async fn idempotency_key_returns_the_same_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = app.create_product("IDEM-1", 100, 10).await;
    let send = |key: &'static str, quantity: i64| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(format!("{}/api/v1/orders", app.base))
                .bearer_auth(&app.shop.customer_token)
                .header("Idempotency-Key", key)
                .json(&json!({"items": [{"product_id": p, "quantity": quantity}]}))
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (first_status, first) = send("key-1", 2).await;
    assert_eq!(first_status, StatusCode::CREATED);
    let (again_status, again) = send("key-1", 2).await;
    assert_eq!(again_status, StatusCode::OK);
    assert_eq!(first["order"]["id"], again["order"]["id"]);
    assert_eq!(first["payment"]["id"], again["payment"]["id"]);
    assert_eq!(app.stock(p).await, 8, "no second reservation");
    let (status, problem) = send("key-1", 3).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "idempotency_key_reused");
    // Concurrent retries with a new key still make one order.
    let results = futures_join(vec![
        send("key-2", 1),
        send("key-2", 1),
        send("key-2", 1),
        send("key-2", 1),
    ])
    .await;
    let ids: std::collections::HashSet<_> = results
        .iter()
        .map(|(_, v)| v["order"]["id"].clone())
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(app.stock(p).await, 7);
    // A failed placement leaves the key free.
    let (status, _) = send("key-3", 50).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = send("key-3", 1).await;
    assert_eq!(status, StatusCode::CREATED);
    app.shop.assert_check_clean().await;
}

async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    // Poll them together so the requests overlap.
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for d in done {
        out.push(d.expect("finished"));
    }
    out
}

async fn webhook_signatures_replays_and_late_payments(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = app.create_product("HOOK-1", 700, 5).await;
    let (_, placed) = app.place(json!([{"product_id": p, "quantity": 1}])).await;
    let payment = &placed["payment"];
    let body = json!({"event_id": "e-1", "payment_id": payment["id"], "status": "succeeded", "amount_cents": 700}).to_string();
    let before = app.shop.snapshot().await;

    let (status, problem) = app.webhook(&body, None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let forged = sign_webhook(b"not the secret", body.as_bytes());
    let (status, _) = app.webhook(&body, Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let good = sign_webhook(SECRET.as_bytes(), body.as_bytes());
    let tampered = body.replace("700", "701");
    let (status, _) = app.webhook(&tampered, Some(&good)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "signature covers the raw body"
    );
    let (status, _) = app.webhook(&body, Some("not hex")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong_amount = json!({"event_id": "e-0", "payment_id": payment["id"], "status": "succeeded", "amount_cents": 1}).to_string();
    let (status, problem) = app
        .webhook(
            &wrong_amount,
            Some(&sign_webhook(SECRET.as_bytes(), wrong_amount.as_bytes())),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("amount_cents"))
    );
    let garbage = "{not json";
    let (status, _) = app
        .webhook(
            garbage,
            Some(&sign_webhook(SECRET.as_bytes(), garbage.as_bytes())),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.shop.snapshot().await,
        before,
        "refused webhooks change nothing"
    );

    let (status, result) = app.webhook(&body, Some(&good)).await;
    assert_eq!(
        (status, result["outcome"].as_str()),
        (StatusCode::OK, Some("paid"))
    );
    let after = app.shop.snapshot().await;
    let (status, result) = app.webhook(&body, Some(&good)).await;
    assert_eq!(
        (status, result["outcome"].as_str()),
        (StatusCode::OK, Some("replayed"))
    );
    assert_eq!(app.shop.snapshot().await, after, "a replay changes nothing");

    // A late success after cancellation: kept, flagged, listed for staff.
    let (_, placed) = app.place(json!([{"product_id": p, "quantity": 1}])).await;
    let id = placed["order"]["id"].as_i64().unwrap();
    app.call(
        Method::POST,
        &format!("/api/v1/orders/{id}/cancel"),
        app.customer(),
        None,
    )
    .await;
    let (status, result) = app.pay(&placed["payment"], "e-late").await;
    assert_eq!(
        (status, result["outcome"].as_str()),
        (StatusCode::OK, Some("refund_required"))
    );
    let (status, list) = app
        .call(
            Method::GET,
            "/api/v1/payments?refund_required=true",
            app.staff(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], placed["payment"]["id"]);
    let (status, _) = app
        .call(
            Method::GET,
            "/api/v1/payments?refund_required=true",
            app.customer(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.shop.assert_check_clean().await;
}

async fn hostile_input_gets_clear_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = app.create_product("HOST-1", 100, 5).await;
    let raw = |method: Method,
               path: &str,
               token: Option<String>,
               content_type: Option<&str>,
               body: String| {
        let app = &app;
        let path = path.to_owned();
        let content_type = content_type.map(str::to_owned);
        async move {
            let mut request = app
                .client
                .request(method, format!("{}{path}", app.base))
                .body(body);
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let ct = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                ct.as_deref(),
                Some("application/problem+json"),
                "{status} {body}"
            );
            (status, body)
        }
    };
    let customer = Some(app.shop.customer_token.clone());
    let staff = Some(app.shop.staff_token.clone());
    let json_ct = Some("application/json");
    let adjustments = format!("/api/v1/products/{p}/stock-adjustments");
    app.shop
        .use_tokens(&[&app.shop.customer_token, &app.shop.staff_token])
        .await;
    let before = app.shop.snapshot().await;
    // (what, method, path, token, content type, body, expected status, expected code)
    type Case<'a> = (
        &'a str,
        Method,
        &'a str,
        Option<String>,
        Option<&'a str>,
        String,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("malformed json", Method::POST, "/api/v1/orders", customer.clone(), json_ct, "{\"items\": [".into(), StatusCode::BAD_REQUEST, "validation_failed"),
        ("wrong type", Method::POST, "/api/v1/orders", customer.clone(), json_ct, json!({"items": "many"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("missing field", Method::POST, "/api/v1/orders", customer.clone(), json_ct, json!({"note": "x"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("zero quantity", Method::POST, "/api/v1/orders", customer.clone(), json_ct, json!({"items": [{"product_id": p, "quantity": 0}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("negative quantity", Method::POST, "/api/v1/orders", customer.clone(), json_ct, json!({"items": [{"product_id": p, "quantity": -3}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("overflowing quantity", Method::POST, "/api/v1/orders", customer.clone(), json_ct, "{\"items\": [{\"product_id\": 1, \"quantity\": 99999999999999999999999}]}".into(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("float quantity", Method::POST, "/api/v1/orders", customer.clone(), json_ct, json!({"items": [{"product_id": p, "quantity": 1.5}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("unknown product", Method::POST, "/api/v1/orders", customer.clone(), json_ct, json!({"items": [{"product_id": 987654, "quantity": 1}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("too much", Method::POST, "/api/v1/orders", customer.clone(), json_ct, json!({"items": [{"product_id": p, "quantity": 6}]}).to_string(), StatusCode::CONFLICT, "insufficient_stock"),
        ("unknown field", Method::POST, "/api/v1/orders", customer.clone(), json_ct, json!({"items": [{"product_id": p, "quantity": 1}], "status": "paid"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("no content type", Method::POST, "/api/v1/orders", customer.clone(), None, json!({"items": []}).to_string(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("negative price", Method::POST, "/api/v1/products", staff.clone(), json_ct, json!({"sku": "N1", "name": "n", "price_cents": -1, "currency": "EUR", "stock": 1}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("overflowing price", Method::POST, "/api/v1/products", staff.clone(), json_ct, "{\"sku\": \"N2\", \"name\": \"n\", \"price_cents\": 1e300, \"currency\": \"EUR\", \"stock\": 1}".into(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("huge price", Method::POST, "/api/v1/products", staff.clone(), json_ct, json!({"sku": "N3", "name": "n", "price_cents": i64::MAX, "currency": "EUR", "stock": 1}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("duplicate sku", Method::POST, "/api/v1/products", staff.clone(), json_ct, json!({"sku": "HOST-1", "name": "n", "price_cents": 1, "currency": "EUR", "stock": 1}).to_string(), StatusCode::CONFLICT, "conflict"),
        ("customer creates product", Method::POST, "/api/v1/products", customer.clone(), json_ct, json!({"sku": "C1", "name": "n", "price_cents": 1, "currency": "EUR", "stock": 1}).to_string(), StatusCode::FORBIDDEN, "forbidden"),
        ("body over the limit", Method::POST, "/api/v1/orders", customer.clone(), json_ct, format!("{{\"note\": \"{}\", \"items\": []}}", "x".repeat(100_000)), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        ("missing token", Method::GET, "/api/v1/orders", None, None, String::new(), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("wrong token", Method::GET, "/api/v1/orders", Some("ordo_0000".into()), None, String::new(), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("bad path id", Method::GET, "/api/v1/orders/12abc", customer.clone(), None, String::new(), StatusCode::NOT_FOUND, "not_found"),
        ("overflowing path id", Method::GET, "/api/v1/orders/99999999999999999999999", customer.clone(), None, String::new(), StatusCode::NOT_FOUND, "not_found"),
        ("missing order", Method::GET, "/api/v1/orders/424242", customer.clone(), None, String::new(), StatusCode::NOT_FOUND, "not_found"),
        ("bad status filter", Method::GET, "/api/v1/orders?status=lost", customer.clone(), None, String::new(), StatusCode::BAD_REQUEST, "validation_failed"),
        ("bad limit", Method::GET, "/api/v1/orders?limit=0", customer.clone(), None, String::new(), StatusCode::BAD_REQUEST, "validation_failed"),
        ("bad cursor", Method::GET, "/api/v1/products?cursor=abc", customer.clone(), None, String::new(), StatusCode::BAD_REQUEST, "validation_failed"),
        ("bad time filter", Method::GET, "/api/v1/orders?created_after=yesterday", customer.clone(), None, String::new(), StatusCode::BAD_REQUEST, "validation_failed"),
        ("unknown route", Method::GET, "/api/v1/nothing", customer.clone(), None, String::new(), StatusCode::NOT_FOUND, "not_found"),
        ("wrong method", Method::DELETE, "/api/v1/products", staff.clone(), None, String::new(), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("zero adjustment", Method::POST, &adjustments, staff.clone(), json_ct, json!({"delta": 0}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("staff order without customer", Method::POST, "/api/v1/orders", staff.clone(), json_ct, json!({"items": [{"product_id": p, "quantity": 1}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
    ];
    for (name, method, path, token, ct, body, status, code) in cases {
        let (got, problem) = raw(method, path, token, ct, body).await;
        assert_eq!(got, status, "{name}: {problem}");
        assert_eq!(problem["code"], code, "{name}: {problem}");
    }
    assert_eq!(
        app.shop.snapshot().await,
        before,
        "no bad request changed anything"
    );
    let (status, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn customers_see_only_their_own_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = app.create_product("OWN-1", 100, 10).await;
    let (_, placed) = app.place(json!([{"product_id": p, "quantity": 1}])).await;
    let id = placed["order"]["id"].as_i64().unwrap();
    let (_, other_token) = app
        .shop
        .ordo
        .create_user_with_token("mallory", UserRole::Customer)
        .await
        .unwrap();
    let other = Some(other_token.expose());
    app.shop
        .use_tokens(&[other_token.expose(), &app.shop.customer_token])
        .await;
    let before = app.shop.snapshot().await;
    for (method, path) in [
        (Method::GET, format!("/api/v1/orders/{id}")),
        (Method::GET, format!("/api/v1/orders/{id}/history")),
        (Method::POST, format!("/api/v1/orders/{id}/cancel")),
        (Method::POST, format!("/api/v1/orders/{id}/complete")),
        (Method::POST, format!("/api/v1/orders/{id}/refund")),
        (Method::POST, format!("/api/v1/orders/{id}/payments")),
    ] {
        let (status, problem) = app.call(method, &path, other, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {problem}");
    }
    let (_, list) = app.call(Method::GET, "/api/v1/orders", other, None).await;
    assert_eq!(list["items"], json!([]));
    for (method, path) in [
        (Method::POST, format!("/api/v1/orders/{id}/ship")),
        (Method::POST, format!("/api/v1/orders/{id}/refund/approve")),
        (Method::POST, format!("/api/v1/orders/{id}/refund/reject")),
        (Method::GET, format!("/api/v1/products/{p}/stock-movements")),
        (Method::PATCH, format!("/api/v1/products/{p}")),
    ] {
        let body = if path.ends_with("ship") {
            Some(json!({"carrier": "x", "tracking_number": "y"}))
        } else if method == Method::PATCH {
            Some(json!({"name": "mine now"}))
        } else {
            None
        };
        // Staff only: refused for who calls, before anything about the order is looked at.
        let (status, problem) = app.call(method, &path, app.customer(), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {problem}");
    }
    assert_eq!(app.shop.snapshot().await, before);
    // The owner opens a payment: the open one comes back.
    let (status, payment) = app
        .call(
            Method::POST,
            &format!("/api/v1/orders/{id}/payments"),
            app.customer(),
            None,
        )
        .await;
    assert_eq!(
        (status, payment["id"].clone()),
        (StatusCode::OK, placed["payment"]["id"].clone())
    );
}

async fn lists_paginate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = app.create_product("PAGE-1", 100, 50).await;
    for _ in 0..5 {
        app.place(json!([{"product_id": p, "quantity": 1}])).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/orders?limit=2&cursor={c}"),
            None => "/api/v1/orders?limit=2".to_owned(),
        };
        let (status, page) = app.call(Method::GET, &path, app.customer(), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for o in page["items"].as_array().unwrap() {
            seen.push(o["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
    let (_, pending) = app
        .call(
            Method::GET,
            "/api/v1/orders?status=pending&created_after=2020-01-01T00:00:00Z",
            app.staff(),
            None,
        )
        .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 5);
    let (_, none) = app
        .call(
            Method::GET,
            "/api/v1/orders?created_before=2020-01-01T00:00:00Z",
            app.staff(),
            None,
        )
        .await;
    assert_eq!(none["items"], json!([]));
}

/// `/openapi.json` is generated from the handlers; this snapshot makes any change to the
/// API visible in review. Regenerate with `UPDATE_SNAPSHOTS=1 cargo test openapi`.
#[tokio::test]
async fn openapi_matches_the_snapshot() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, spec) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/openapi.json");
    let rendered = serde_json::to_string_pretty(&spec).unwrap() + "\n";
    if std::env::var("UPDATE_SNAPSHOTS").is_ok() {
        std::fs::write(path, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(path).expect("snapshot; run with UPDATE_SNAPSHOTS=1");
    assert!(
        expected == rendered,
        "the OpenAPI document changed; review it and run UPDATE_SNAPSHOTS=1 cargo test openapi"
    );
    for path in [
        "/api/v1/products",
        "/api/v1/products/{id}",
        "/api/v1/products/{id}/stock-adjustments",
        "/api/v1/products/{id}/stock-movements",
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/orders/{id}/history",
        "/api/v1/orders/{id}/cancel",
        "/api/v1/orders/{id}/ship",
        "/api/v1/orders/{id}/complete",
        "/api/v1/orders/{id}/refund",
        "/api/v1/orders/{id}/refund/approve",
        "/api/v1/orders/{id}/refund/reject",
        "/api/v1/orders/{id}/payments",
        "/api/v1/payments/webhook",
        "/api/v1/payments/wechatpay/notify",
        "/api/v1/payments/alipay/notify",
        "/api/v1/payments/stripe/webhook",
        "/api/v1/payments/{id}/ask-provider",
        "/api/v1/payments/{id}/refund",
        "/api/v1/payments",
        "/api/v1/sweeps",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
}

/// The sum of the samples of `name` whose labels include each of `labels`, in Prometheus
/// text; `None` when there is no such sample.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, series_labels) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest),
            None => (series, ""),
        };
        if metric == name
            && labels
                .iter()
                .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        {
            *sum.get_or_insert(0.0) += value.parse::<f64>().expect("a sample value");
        }
    }
    sum
}

/// `/metrics` carries what operators watch, and Prometheus's own checker accepts it
/// (`promtool check metrics`, from Debian's prometheus package; `.ci/run` installs it and
/// sets ORDO_REQUIRE_PROMTOOL so that it cannot be skipped there).
///
/// The recorder is global to a process, and this test binary runs every other test too: the
/// metrics are read from an `ordo serve` of this test's own, so that every count is exactly
/// what this test did, read once its sweep has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text() {
    let shop = TestShop::new(Backend::Sqlite).await;
    let p = shop.product(10, 100).await;
    // Payments expire at once, so that the unpaid order is due for a sweep with timeout 0.
    let (mut server, base) = crate::service::serve(
        &shop,
        &[
            ("ORDO_PAYMENT_TTL_MINUTES", "0"),
            ("ORDO_WEBHOOK_SECRET", SECRET),
        ],
    )
    .await;
    let client = crate::helpers::client();
    let mut placed = Vec::new();
    for _ in 0..2 {
        let response = client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(&shop.customer_token)
            .json(&json!({"items": [{"product_id": p.id, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        placed.push(response.json::<Value>().await.unwrap());
    }
    let payment = &placed[0]["payment"];
    let body = json!({"event_id": "evt-metrics", "payment_id": payment["id"], "status": "succeeded", "amount_cents": payment["amount_cents"]}).to_string();
    let response = client
        .post(format!("{base}/api/v1/payments/webhook"))
        .header("content-type", "application/json")
        .header(
            "X-Ordo-Signature",
            sign_webhook(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client
        .get(format!("{base}/api/v1/orders/999999"))
        .bearer_auth(&shop.customer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client
        .post(format!("{base}/api/v1/sweeps"))
        .bearer_auth(&shop.staff_token)
        .json(&json!({"timeout_minutes": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let run = format!("{base}{}", response.headers()["location"].to_str().unwrap());
    let mut finished = false;
    for _ in 0..400 {
        let record: Value = client
            .get(&run)
            .bearer_auth(&shop.staff_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if record["state"] != "running" {
            assert_eq!(record["state"], "finished", "{record}");
            assert_eq!(record["cancelled"], 1, "{record}");
            finished = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(finished, "the sweep did not finish");

    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let _ = server.kill();
    let _ = server.wait();
    // Exactly what this test did.
    let post_orders = [
        ("method", "POST"),
        ("route", "/api/v1/orders"),
        ("status", "201"),
    ];
    for (name, labels, expected) in [
        ("ordo_orders_placed_total", &[][..], 2.0),
        ("ordo_http_requests_total", &post_orders[..], 2.0),
        (
            "ordo_http_requests_total",
            &[("route", "/api/v1/orders/{id}"), ("status", "404")][..],
            1.0,
        ),
        (
            "ordo_order_transitions_total",
            &[("from", "pending"), ("to", "paid")][..],
            1.0,
        ),
        (
            "ordo_order_transitions_total",
            &[("from", "pending"), ("to", "cancelled")][..],
            1.0,
        ),
        ("ordo_sweep_runs_total", &[("dry_run", "false")][..], 1.0),
        ("ordo_sweep_orders_cancelled_total", &[][..], 1.0),
        ("ordo_sweep_units_released_total", &[][..], 1.0),
        ("ordo_sweep_duration_seconds_count", &[][..], 1.0),
        (
            "ordo_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", "/api/v1/orders")][..],
            2.0,
        ),
        ("ordo_late_payments_awaiting_refund", &[][..], 0.0),
    ] {
        assert_eq!(
            sample(&text, name, labels),
            Some(expected),
            "{name} {labels:?} in /metrics:\n{text}"
        );
    }
    assert!(
        sample(&text, "ordo_oldest_overdue_order_age_seconds", &[]).is_some(),
        "{text}"
    );
    assert!(
        !text.contains("route=\"/api/v1/orders/999999\""),
        "routes are labelled by template, not by id:\n{text}"
    );

    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match promtool {
        Ok(child) => child,
        Err(_) if std::env::var("ORDO_REQUIRE_PROMTOOL").is_err() => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: promtool not found; `apt-get install prometheus` to check /metrics with it"
            );
            return;
        }
        Err(e) => panic!("promtool is required here: {e}"),
    };
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The OpenAPI document states the bounds the server enforces, so that a client generated
/// from it sends nothing the server refuses for its shape: each value below is accepted by
/// the server exactly when the document's schema takes it. (That a host must resolve to a
/// public address the document says in words.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_states_the_bounds_the_server_enforces() {
    let app = TestApp::spawn_with(Backend::Sqlite, |mut state| {
        state.ordo.policy.webhook_allow_private = false;
        state.webhook_allow_private = false;
        state
    })
    .await;
    let (_, spec) = app.call(Method::GET, "/openapi.json", None, None).await;
    let pattern = |schema: &Value| {
        regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).expect("a regex")
    };

    // Idempotency-Key: 1 to 200 visible ASCII characters.
    let header = spec["paths"]["/api/v1/orders"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("the header is documented")["schema"]
        .clone();
    assert_eq!(
        (header["minLength"].clone(), header["maxLength"].clone()),
        (json!(1), json!(200))
    );
    let key_shape = pattern(&header);
    let product = app.create_product("BOUNDS-1", 100, 1000).await;
    for (i, key) in [
        "k".to_owned(),
        "~".repeat(200),
        "!#$%&'*+-.^_`|".to_owned(),
        String::new(),
        "x".repeat(201),
        "two words".to_owned(),
        "ключ".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        let response = app
            .client
            .post(format!("{}/api/v1/orders", app.base))
            .bearer_auth(&app.shop.customer_token)
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key.as_bytes()).unwrap(),
            )
            .json(
                &json!({"items": [{"product_id": product, "quantity": 1}], "note": format!("{i}")}),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        let documented = key_shape.is_match(&key) && (1..=200).contains(&key.len());
        assert_eq!(
            status.is_success(),
            documented,
            "key {key:?}: {status} {body}"
        );
        if !documented {
            assert_eq!(body["field"], "Idempotency-Key", "{body}");
        }
    }

    // Token lifetimes: at most 3650 days, in any unit.
    let lifetime =
        pattern(&spec["components"]["schemas"]["TokenRequest"]["properties"]["expires_in"]);
    for span in [
        "90d", "3650d", "3651d", "87600h", "87601h", "521w", "522w", "999999s", "999999m",
        "1000000s", "0d", "05d", "12y",
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/tokens",
                app.staff(),
                Some(json!({"name": format!("t-{span}"), "role": "customer", "expires_in": span})),
            )
            .await;
        assert_eq!(
            status == StatusCode::CREATED,
            lifetime.is_match(span),
            "expires_in {span}: {status} {body}"
        );
    }

    // Webhook endpoints: https only on a server that does not allow private targets.
    let schemas = &spec["components"]["schemas"];
    for schema in ["EndpointRequest", "EndpointChange"] {
        let url = &schemas[schema]["properties"]["url"];
        assert!(
            !pattern(url).is_match("http://8.8.8.8/hook"),
            "{schema}: {url}"
        );
        assert!(
            pattern(url).is_match("https://8.8.8.8/hook"),
            "{schema}: {url}"
        );
    }
    let described = schemas["EndpointRequest"]["properties"]["url"]["description"]
        .as_str()
        .unwrap();
    assert!(
        described.contains("private") && described.contains("resolve"),
        "{described}"
    );
    for (url, documented) in [
        ("https://8.8.8.8/hook", true),
        ("http://8.8.8.8/hook", false),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/webhook-endpoints",
                app.staff(),
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(
            status == StatusCode::CREATED,
            documented,
            "{url}: {status} {body}"
        );
    }
}
