//! Limits, tokens and audit over real HTTP, on both databases: who calls is decided before
//! what they send, tokens expire and are revoked at once, customers cannot hoard stock,
//! requests are rate limited, late payments are settled, sweeps started over HTTP are
//! recorded runs, and every staff action leaves one audit row.

use crate::api::TestApp;
use crate::helpers::{Backend, MINUTE, T0, TestShop};
use crate::on_both_databases;
use ordo::audit::AuditFilter;
use ordo::auth::NewToken;
use ordo::domain::{Actor, NewOrder, UserRole};
use ordo::{Error, Ordo, Policy};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_databases!(
    who_calls_is_decided_before_what_they_send,
    validation_names_the_field_in_words,
    tokens_expire_and_are_revoked_at_once,
    last_use_is_written_at_most_once_a_minute,
    racing_placements_cannot_exceed_the_pending_limit,
    units_per_order_and_staff_on_behalf_are_limited,
    the_rate_limiter_refuses_a_burst_with_retry_after,
    late_payments_are_settled_once,
    every_staff_action_has_one_audit_row,
);

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Expired,
    Revoked,
    Owner,
    OtherCustomer,
    Staff,
}

/// What they send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Valid,
    Empty,
    Malformed,
}

/// How an endpoint may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    AnyToken,
    /// Customers (the order's owner) and staff.
    OwnerOrStaff,
    /// The order's owner only.
    OwnerOnly,
    StaffOnly,
}

fn access(method: &str, template: &str) -> Access {
    match (method, template) {
        ("get", "/api/v1/products" | "/api/v1/products/{id}") => Access::AnyToken,
        ("post" | "get", "/api/v1/orders") => Access::AnyToken,
        ("get", "/api/v1/orders/{id}" | "/api/v1/orders/{id}/history") => Access::OwnerOrStaff,
        (
            "post",
            "/api/v1/orders/{id}/cancel"
            | "/api/v1/orders/{id}/complete"
            | "/api/v1/orders/{id}/refund",
        ) => Access::OwnerOrStaff,
        ("post", "/api/v1/orders/{id}/payments") => Access::OwnerOnly,
        _ => Access::StaffOnly,
    }
}

/// What the status must be when `who` may not call: decided before the body is read.
fn refused(access: Access, who: Who) -> Option<StatusCode> {
    match who {
        Who::Nobody | Who::Expired | Who::Revoked => Some(StatusCode::UNAUTHORIZED),
        Who::Owner => (access == Access::StaffOnly).then_some(StatusCode::FORBIDDEN),
        Who::OtherCustomer => match access {
            Access::AnyToken => None,
            Access::StaffOnly => Some(StatusCode::FORBIDDEN),
            Access::OwnerOrStaff | Access::OwnerOnly => Some(StatusCode::NOT_FOUND),
        },
        Who::Staff => (access == Access::OwnerOnly).then_some(StatusCode::FORBIDDEN),
    }
}

fn valid_body(method: &str, template: &str, product: i64) -> Option<Value> {
    Some(match (method, template) {
        ("post", "/api/v1/products") => {
            json!({"sku": "MATRIX-1", "name": "Matrix", "price_cents": 100, "currency": "EUR", "stock": 1})
        }
        ("patch", "/api/v1/products/{id}") => json!({"name": "Renamed"}),
        ("post", "/api/v1/products/{id}/stock-adjustments") => {
            json!({"delta": 1, "reason": "count"})
        }
        ("post", "/api/v1/orders") => json!({"items": [{"product_id": product, "quantity": 1}]}),
        ("post", "/api/v1/orders/{id}/cancel" | "/api/v1/orders/{id}/refund") => {
            json!({"reason": "why"})
        }
        ("post", "/api/v1/orders/{id}/refund/approve" | "/api/v1/orders/{id}/refund/reject") => {
            json!({"reason": "why"})
        }
        ("post", "/api/v1/orders/{id}/ship") => json!({"carrier": "DHL", "tracking_number": "1"}),
        ("post", "/api/v1/payments/{id}/refund-settled") => json!({"provider_ref": "re_1"}),
        ("post", "/api/v1/sweeps") => json!({"dry_run": true}),
        ("post", "/api/v1/tokens") => json!({"name": "matrix", "role": "customer"}),
        ("post", "/api/v1/webhook-endpoints") => json!({"url": "http://127.0.0.1:9/hook"}),
        ("put", "/api/v1/customers/by-external-id/{external_id}") => {
            json!({"display_name": "Matrix", "phone": "138 0013 8000"})
        }
        ("post", "/api/v1/customers/{id}/tokens") => json!({"expires_in": "1d"}),
        ("put", "/api/v1/orders/{id}/shipping-address") => json!({
            "name": "王小明", "phone": "138 0013 8000", "province": "上海市", "city": "上海市",
            "line": "世纪大道 100 号"}),
        ("patch", "/api/v1/webhook-endpoints/{id}") => json!({"description": "x"}),
        ("post", "/api/v1/webhook-endpoints/{id}/replay") => {
            json!({"since": "2026-11-25T00:00:00Z", "until": "2026-11-26T00:00:00Z"})
        }
        _ => return None,
    })
}

/// An app with one of each thing an `{id}` can name, and a token for each kind of caller.
struct World {
    app: TestApp,
    tokens: Vec<(Who, Option<String>)>,
    ids: Vec<(&'static str, i64)>,
    product: i64,
}

async fn world(backend: Backend) -> World {
    let app = TestApp::spawn(backend).await;
    let shop = &app.shop;
    let product = shop.product(100, 250).await.id;
    let order = shop.order(&[(product, 1)]).await;
    let other = shop.another_customer().await;
    let (_, other_token) = shop
        .ordo
        .issue_token(
            Actor::Operator,
            &NewToken {
                name: "other token".into(),
                user_id: Some(other.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let customer = |name: &str, expires_in| NewToken {
        name: name.into(),
        user_id: Some(shop.customer.id),
        expires_in,
        ..Default::default()
    };
    let (_, expired) = shop
        .ordo
        .issue_token(Actor::Operator, &customer("short", Some(1000)))
        .await
        .unwrap();
    let (revoked_info, revoked) = shop
        .ordo
        .issue_token(Actor::Operator, &customer("revoked", None))
        .await
        .unwrap();
    shop.ordo
        .revoke_token(shop.staff(), revoked_info.id)
        .await
        .unwrap();
    let (spare, _) = shop
        .ordo
        .issue_token(Actor::Operator, &customer("spare", None))
        .await
        .unwrap();
    shop.ordo.clock.advance(2000);
    let (endpoint, _) = shop
        .ordo
        .create_endpoint(
            shop.staff(),
            &ordo::events::endpoints::NewEndpoint {
                url: "http://127.0.0.1:9/hook".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    shop.order(&[(product, 1)]).await; // an event, so a delivery
    let delivery: i64 = shop.count("SELECT MAX(id) FROM webhook_deliveries").await;
    let (run, _) = shop
        .ordo
        .run_sweep(
            shop.staff(),
            ordo::sweep::SweepTrigger::Api,
            &ordo::sweep::SweepRequest {
                timeout_minutes: 30,
                dry_run: true,
                batch_size: 10,
                limit: None,
                now: None,
            },
            &std::sync::atomic::AtomicBool::new(false),
            |_, _| {},
        )
        .await
        .unwrap();
    let tokens = vec![
        (Who::Nobody, None),
        (Who::Expired, Some(expired.expose().to_owned())),
        (Who::Revoked, Some(revoked.expose().to_owned())),
        (Who::Owner, Some(shop.customer_token.clone())),
        (Who::OtherCustomer, Some(other_token.expose().to_owned())),
        (Who::Staff, Some(shop.staff_token.clone())),
    ];
    let ids = vec![
        ("/api/v1/orders/", order.order.order.id),
        ("/api/v1/products/", product),
        ("/api/v1/payments/", order.payment.id),
        ("/api/v1/tokens/", spare.id),
        ("/api/v1/webhook-endpoints/", endpoint.id),
        ("/api/v1/webhook-deliveries/", delivery),
        ("/api/v1/sweeps/", run.id),
        ("/api/v1/customers/", shop.customer.id),
    ];
    World {
        app,
        tokens,
        ids,
        product,
    }
}

impl World {
    fn path(&self, template: &str) -> String {
        let template = template.replace("{external_id}", "matrix-1");
        let id = self
            .ids
            .iter()
            .find(|(prefix, _)| template.starts_with(prefix))
            .map_or(1, |(_, id)| *id);
        template.replace("{id}", &id.to_string())
    }

    fn token(&self, who: Who) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(w, _)| *w == who)
            .and_then(|(_, t)| t.as_deref())
    }

    /// Every operation of the API (from the OpenAPI document the router generates), but the
    /// payment provider's webhook (signed, not a bearer token).
    fn operations(&self) -> Vec<(String, String)> {
        let (_, doc) = ordo::http::router(ordo::http::AppState::new(self.app.shop.ordo.clone()));
        let doc = serde_json::to_value(doc).unwrap();
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            // The providers' own endpoints are theirs: signed, not authenticated.
            if !path.starts_with("/api/v1/")
                || matches!(
                    path.as_str(),
                    "/api/v1/payments/webhook"
                        | "/api/v1/payments/wechatpay/notify"
                        | "/api/v1/payments/alipay/notify"
                        | "/api/v1/payments/stripe/webhook"
                )
            {
                continue;
            }
            for method in item.as_object().unwrap().keys() {
                ops.push((method.clone(), path.clone()));
            }
        }
        ops
    }

    async fn send(&self, method: &str, path: &str, who: Who, body: Body) -> (StatusCode, Value) {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let template_body = valid_body(
            &method.as_str().to_lowercase(),
            &self.template_of(path),
            self.product,
        );
        let text = match body {
            Body::Valid => template_body.map(|b| b.to_string()).unwrap_or_default(),
            Body::Empty => String::new(),
            Body::Malformed => "{\"not json".to_owned(),
        };
        self.app.send(method, path, self.token(who), &text).await
    }

    fn template_of(&self, path: &str) -> String {
        if let Some((prefix, _)) = path.split_once("/by-external-id/") {
            return format!("{prefix}/by-external-id/{{external_id}}");
        }
        let mut template = path.to_owned();
        for (_, id) in &self.ids {
            template = template.replace(&format!("/{id}/"), "/{id}/");
            if template.ends_with(&format!("/{id}")) {
                let cut = template.len() - id.to_string().len();
                template = format!("{}{{id}}", &template[..cut]);
            }
        }
        template
    }
}

async fn who_calls_is_decided_before_what_they_send(backend: Backend) {
    let world = world(backend).await;
    let ops = world.operations();
    assert!(ops.len() >= 30, "{ops:?}");
    let valid: Vec<&str> = [Who::Owner, Who::OtherCustomer, Who::Staff]
        .into_iter()
        .filter_map(|who| world.token(who))
        .collect();
    world.app.shop.use_tokens(&valid).await;
    let before = world.app.shop.snapshot().await;
    // Callers who may not call get 401, 403 or 404 whatever they send, and change nothing.
    for (method, template) in &ops {
        let access = access(method, template);
        let path = world.path(template);
        for who in [
            Who::Nobody,
            Who::Expired,
            Who::Revoked,
            Who::Owner,
            Who::OtherCustomer,
            Who::Staff,
        ] {
            let Some(expected) = refused(access, who) else {
                continue;
            };
            for body in [Body::Valid, Body::Empty, Body::Malformed] {
                let (status, problem) = world.send(method, &path, who, body).await;
                assert_eq!(
                    status, expected,
                    "{method} {template} as {who:?} with a {body:?} body: {problem}"
                );
            }
        }
    }
    assert_eq!(
        world.app.shop.snapshot().await,
        before,
        "refused calls changed something"
    );
    // Callers who may call see what they sent judged: a malformed body is 400 wherever a
    // body is read, and never 401 or 403.
    for (method, template) in &ops {
        let access = access(method, template);
        let path = world.path(template);
        for who in [Who::Owner, Who::OtherCustomer, Who::Staff] {
            if refused(access, who).is_some() {
                continue;
            }
            let takes_body = valid_body(method, template, world.product).is_some();
            let (status, problem) = world.send(method, &path, who, Body::Malformed).await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {template} as {who:?}: {problem}"
            );
            if takes_body {
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "{method} {template} as {who:?}: {problem}"
                );
                assert_eq!(problem["field"], "body");
            }
        }
    }
}

async fn validation_names_the_field_in_words(backend: Backend) {
    let world = world(backend).await;
    let app = &world.app;
    let staff = app.staff();
    let order = world.path("/api/v1/orders/{id}");
    app.shop.pay_order(world.ids[0].1).await;
    let cases = [
        ("/api/v1/products", json!({}), "sku", "required"),
        (
            "/api/v1/products",
            json!({"sku": "A", "name": "B", "price_cents": "9", "currency": "EUR", "stock": 1}),
            "price_cents",
            "must be a whole number",
        ),
        (
            &format!("{order}/ship") as &str,
            json!({}),
            "carrier",
            "required",
        ),
        (
            &format!("{order}/ship"),
            json!({"carrier": "DHL"}),
            "tracking_number",
            "required",
        ),
        (
            &format!("{order}/ship"),
            json!({"carrier": "DHL", "tracking_number": "1", "eta": 3}),
            "eta",
            "unknown field; expected one of: carrier, tracking_number",
        ),
        (
            "/api/v1/orders",
            json!({"items": [{"product_id": 1}], "user_id": 2}),
            "items[0].quantity",
            "required",
        ),
    ];
    for (path, body, field, detail) in cases {
        let (status, problem) = app.send(Method::POST, path, staff, &body.to_string()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {problem}"
        );
        assert_eq!(problem["field"], field, "{problem}");
        assert_eq!(problem["detail"], detail, "{problem}");
        let text = problem.to_string();
        assert!(
            !text.contains('`') && !text.contains("line "),
            "library words: {text}"
        );
    }
}

async fn tokens_expire_and_are_revoked_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let shop = &app.shop;
    let issue = |body| app.call(Method::POST, "/api/v1/tokens", app.staff(), Some(body));
    let (status, issued) =
        issue(json!({"name": "frontend", "role": "customer", "expires_in": "90d"})).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(issued["state"], "active");
    assert_eq!(
        issued["expires_at"],
        ordo::domain::format_rfc3339(T0 + 90 * 24 * 60 * MINUTE)
    );
    let (status, _) = app
        .call(Method::GET, "/api/v1/products", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Listed without the token itself.
    let (_, list) = app
        .call(Method::GET, "/api/v1/tokens", app.staff(), None)
        .await;
    assert!(!list.to_string().contains(&token[5..]));
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "frontend")
    );
    // Revoked: refused from the next request on.
    let id = issued["id"].as_i64().unwrap();
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            app.staff(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = app
        .call(Method::GET, "/api/v1/products", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            app.staff(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "revoking twice");
    // Expired: refused once its time has come.
    let (_, short) = shop
        .ordo
        .issue_token(
            Actor::Operator,
            &NewToken {
                name: "short".into(),
                role: Some(UserRole::Customer),
                expires_in: Some(MINUTE),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, _) = app
        .call(Method::GET, "/api/v1/orders", Some(short.expose()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    shop.ordo.clock.advance(MINUTE);
    let (status, problem) = app
        .call(Method::GET, "/api/v1/orders", Some(short.expose()), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        problem["detail"].as_str().unwrap().contains("expired"),
        "{problem}"
    );
    // Bad spans are refused, naming the field.
    let (status, problem) =
        issue(json!({"name": "x", "role": "staff", "expires_in": "90 days"})).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("expires_in"))
    );
    // So are lifetimes past ten years (749,430 weeks would end in the year 16389, which
    // no RFC 3339 timestamp can say), and nothing is written.
    let tokens = || shop.count("SELECT COUNT(*) FROM api_tokens");
    let before = tokens().await;
    for span in ["749430w", "3651d"] {
        let (status, problem) =
            issue(json!({"name": "x", "role": "staff", "expires_in": span})).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("expires_in")),
            "{span}: {problem}"
        );
    }
    assert_eq!(tokens().await, before);
    let (status, _) = issue(json!({"name": "x", "role": "staff", "expires_in": "3650d"})).await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn last_use_is_written_at_most_once_a_minute(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let last_used = || {
        shop.scalar(
            "SELECT COALESCE(MAX(last_used_at), 0) FROM api_tokens WHERE user_id = $1",
            shop.customer.id,
        )
    };
    // Uses are written in batches, not one statement per request.
    shop.ordo.authenticate(&shop.customer_token).await.unwrap();
    shop.ordo.flush_token_uses().await.unwrap();
    assert_eq!(last_used().await, T0);
    shop.ordo.clock.advance(30_000);
    shop.ordo.authenticate(&shop.customer_token).await.unwrap();
    shop.ordo.flush_token_uses().await.unwrap();
    assert_eq!(last_used().await, T0, "not again within the minute");
    shop.ordo.clock.advance(31_000);
    shop.ordo.authenticate(&shop.customer_token).await.unwrap();
    shop.ordo.flush_token_uses().await.unwrap();
    assert_eq!(last_used().await, T0 + 61_000);
    // And without an explicit flush, in the background within seconds.
    shop.ordo.clock.advance(61_000);
    shop.ordo.authenticate(&shop.customer_token).await.unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while last_used().await != T0 + 122_000 {
        assert!(
            std::time::Instant::now() < until,
            "the use was never written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn limited(shop: &TestShop, pending: u32, units: u32) -> Ordo {
    Ordo::new(
        shop.ordo.db.clone(),
        Policy {
            max_pending_orders_per_customer: pending,
            max_units_per_order: units,
            ..shop.ordo.policy
        },
        shop.ordo.clock.clone(),
    )
}

async fn racing_placements_cannot_exceed_the_pending_limit(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let ordo = limited(&shop, 5, 100);
    let p = shop.product(1000, 100).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let ordo = ordo.clone();
        let new = shop.new_order(&[(p.id, 1)]);
        let actor = shop.owner();
        tasks.push(tokio::spawn(
            async move { ordo.place_order(actor, &new).await },
        ));
    }
    let mut placed = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => placed += 1,
            Err(Error::TooManyPendingOrders { pending, .. }) => {
                assert_eq!(pending, 5);
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((placed, refused), (5, 15));
    let pending = shop
        .scalar(
            "SELECT COUNT(*) FROM orders WHERE user_id = $1 AND status = 'pending'",
            shop.customer.id,
        )
        .await;
    assert_eq!(pending, 5);
    assert_eq!(shop.stock(p.id).await, 995);
    shop.assert_check_clean().await;
}

async fn units_per_order_and_staff_on_behalf_are_limited(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let ordo = limited(&shop, 2, 100);
    let p = shop.product(1000, 100).await;
    let q = shop.product(1000, 100).await;
    match ordo
        .place_order(shop.owner(), &shop.new_order(&[(p.id, 60), (q.id, 41)]))
        .await
    {
        Err(Error::Validation { field, message }) => {
            assert_eq!(field, "items[1].quantity");
            assert!(message.contains("100"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    ordo.place_order(shop.owner(), &shop.new_order(&[(p.id, 60), (q.id, 40)]))
        .await
        .unwrap();
    // Staff placing for the customer count against the same limit.
    let for_customer = NewOrder::from_lines(shop.customer.id, &[(p.id, 1)], None);
    ordo.place_order(shop.staff(), &for_customer).await.unwrap();
    assert!(matches!(
        ordo.place_order(shop.staff(), &for_customer).await,
        Err(Error::TooManyPendingOrders { .. })
    ));
    // Paying one frees a place.
    let first = shop
        .ordo
        .orders(
            shop.staff(),
            ordo::orders::OrderFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let order = shop.ordo.order(shop.staff(), first[0].id).await.unwrap();
    shop.pay_order(order.order.id).await;
    ordo.place_order(shop.owner(), &shop.new_order(&[(p.id, 1)]))
        .await
        .unwrap();
    shop.assert_check_clean().await;
}

async fn the_rate_limiter_refuses_a_burst_with_retry_after(backend: Backend) {
    let app = TestApp::spawn_with(backend, |state| state.with_rate_limit(2, 5)).await;
    // A burst, back to back until the first refusal. The bucket holds 5 and refills 2 a
    // second: at least 5 go through, and at most 5 more than refilled while the burst
    // lasted (measured here, however loaded the machine).
    let started = std::time::Instant::now();
    let mut allowed = 0;
    let mut retry_after = None;
    while retry_after.is_none() && allowed < 200 {
        let response = app
            .client
            .get(format!("{}/api/v1/products", app.base))
            .bearer_auth(&app.shop.customer_token)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = Some(
                response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned()),
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["code"], "rate_limited");
        } else {
            assert_eq!(response.status(), StatusCode::OK);
            allowed += 1;
        }
    }
    let took = started.elapsed();
    let refilled = (took.as_secs_f64() * 2.0).floor() as usize;
    assert!(
        retry_after.is_some() && (5..=5 + refilled).contains(&allowed),
        "{allowed} allowed in {took:?} before the first refusal (burst 5, 2 a second)"
    );
    assert_eq!(retry_after.flatten().as_deref(), Some("1"));
    // Another token is unaffected, and the signed payment webhook is exempt.
    let (status, _) = app
        .call(Method::GET, "/api/v1/products", app.staff(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..10 {
        let (status, _) = app.webhook("{}", Some("00")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the webhook is judged by its signature only"
        );
    }
    // Unauthenticated requests are limited by address, by the same rule.
    let started = std::time::Instant::now();
    let mut answered = 0;
    loop {
        let (status, _) = app
            .send(Method::GET, "/api/v1/products", Some("ordo_nope"), "")
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        answered += 1;
        assert!(answered < 200, "an unknown token was never rate limited");
    }
    let refilled = (started.elapsed().as_secs_f64() * 2.0).floor() as usize;
    assert!(
        (5..=5 + refilled).contains(&answered),
        "{answered} answered before the first refusal"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _) = app
        .call(Method::GET, "/api/v1/products", app.customer(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "the bucket refills");
}

async fn late_payments_are_settled_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let shop = &app.shop;
    let p = shop.product(10, 500).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    shop.ordo
        .cancel_order(shop.owner(), id, None)
        .await
        .unwrap();
    shop.pay(&placed).await; // late: kept, flagged for refund
    let payment = placed.payment.id;
    let (_, queue) = app
        .call(
            Method::GET,
            "/api/v1/payments?refund_required=true",
            app.staff(),
            None,
        )
        .await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 1);
    let path = format!("/api/v1/payments/{payment}/refund-settled");
    let settle = |body: Value| app.call(Method::POST, &path, app.staff(), Some(body));
    let (status, problem) = settle(json!({})).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("provider_ref"))
    );
    let (status, settled) = settle(json!({"provider_ref": "re_123"})).await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    assert_eq!(settled["status"], "refunded");
    assert_eq!(settled["refund_required"], false);
    assert_eq!(settled["refund_ref"], "re_123");
    let (_, queue) = app
        .call(
            Method::GET,
            "/api/v1/payments?refund_required=true",
            app.staff(),
            None,
        )
        .await;
    assert!(
        queue["items"].as_array().unwrap().is_empty(),
        "left the queue"
    );
    let (status, _) = settle(json!({"provider_ref": "re_123"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "settling twice");
    // A payment that needs no refund.
    let other = shop.order(&[(p.id, 1)]).await;
    let (status, problem) = app
        .call(
            Method::POST,
            &format!("/api/v1/payments/{}/refund-settled", other.payment.id),
            app.staff(),
            Some(json!({"provider_ref": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    // The order keeps its status and history.
    assert_eq!(
        shop.moves(id).await,
        ["none->pending", "pending->cancelled"]
    );
    shop.assert_check_clean().await;
}

async fn every_staff_action_has_one_audit_row(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let staff = app.staff();
    // (request id, audit action) of each staff call, and the operations called.
    let mut actions = Vec::new();
    let mut called = std::collections::BTreeSet::new();
    let mut act =
        async |method: Method, template: &str, id: i64, body: Option<Value>, action: &str| {
            let request_id = format!("audit-{}", actions.len());
            let path = template
                .replace("{id}", &id.to_string())
                .replace("{external_id}", "audit-customer");
            let mut request = app
                .client
                .request(method.clone(), format!("{}{path}", app.base))
                .bearer_auth(staff.unwrap())
                .header("x-request-id", &request_id);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{method} {path}: {status} {answer}");
            actions.push((request_id, action.to_owned()));
            called.insert((method.as_str().to_lowercase(), template.to_owned()));
            answer
        };
    let none = 0;
    // An endpoint first, so that the orders' events have deliveries to redeliver.
    let endpoint = act(
        Method::POST,
        "/api/v1/webhook-endpoints",
        none,
        Some(json!({"url": "http://127.0.0.1:9/x"})),
        "webhook_endpoint.create",
    )
    .await;
    let endpoint = endpoint["id"].as_i64().unwrap();
    act(
        Method::PATCH,
        "/api/v1/webhook-endpoints/{id}",
        endpoint,
        Some(json!({"description": "audited"})),
        "webhook_endpoint.update",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/webhook-endpoints/{id}/rotate-secret",
        endpoint,
        None,
        "webhook_endpoint.rotate_secret",
    )
    .await;

    let product = act(Method::POST, "/api/v1/products", none, Some(json!({"sku": "AUD", "name": "Audited", "price_cents": 100, "currency": "EUR", "stock": 10})), "product.create").await;
    let p = product["id"].as_i64().unwrap();
    act(
        Method::PATCH,
        "/api/v1/products/{id}",
        p,
        Some(json!({"price_cents": 120})),
        "product.update",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/products/{id}/stock-adjustments",
        p,
        Some(json!({"delta": 3, "reason": "delivery"})),
        "stock.adjust",
    )
    .await;

    let customer = app.shop.customer.id;
    let for_customer = json!({"user_id": customer, "items": [{"product_id": p, "quantity": 1}]});
    // A customer made by the shop's backend: created, given a token, erased.
    let made = act(
        Method::PUT,
        "/api/v1/customers/by-external-id/{external_id}",
        none,
        Some(json!({"display_name": "Audited", "phone": "138 0013 8000"})),
        "customer.upsert",
    )
    .await;
    let made = made["id"].as_i64().unwrap();
    act(
        Method::POST,
        "/api/v1/customers/{id}/tokens",
        made,
        Some(json!({"expires_in": "30d"})),
        "token.create",
    )
    .await;
    act(
        Method::DELETE,
        "/api/v1/customers/{id}/personal-data",
        made,
        None,
        "customer.erase",
    )
    .await;
    // An address corrected before shipping.
    let placed = act(
        Method::POST,
        "/api/v1/orders",
        none,
        Some(for_customer.clone()),
        "order.create",
    )
    .await;
    act(
        Method::PUT,
        "/api/v1/orders/{id}/shipping-address",
        placed["order"]["id"].as_i64().unwrap(),
        Some(
            json!({"name": "王小明", "phone": "138 0013 8000", "province": "上海市",
                    "city": "上海市", "line": "世纪大道 100 号"}),
        ),
        "order.address_change",
    )
    .await;
    // Cancelled by staff.
    let placed = act(
        Method::POST,
        "/api/v1/orders",
        none,
        Some(for_customer.clone()),
        "order.create",
    )
    .await;
    let cancelled = placed["order"]["id"].as_i64().unwrap();
    act(
        Method::POST,
        "/api/v1/orders/{id}/cancel",
        cancelled,
        Some(json!({"reason": "asked by phone"})),
        "order.cancel",
    )
    .await;
    // Paid late, after the cancellation: the refund is settled by staff.
    app.pay(&placed["payment"], "evt-audit-late").await;
    let late = placed["payment"]["id"].as_i64().unwrap();
    act(
        Method::POST,
        "/api/v1/payments/{id}/refund-settled",
        late,
        Some(json!({"provider_ref": "re_audit"})),
        "payment.refund_settled",
    )
    .await;
    // A late payment taken by a provider (Stripe, which this shop has no key for): staff ask
    // the provider about it, and send its refund (both recorded, whatever the provider says).
    let placed = act(
        Method::POST,
        "/api/v1/orders",
        none,
        Some(for_customer.clone()),
        "order.create",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/orders/{id}/cancel",
        placed["order"]["id"].as_i64().unwrap(),
        Some(json!({"reason": "asked by phone"})),
        "order.cancel",
    )
    .await;
    app.pay(&placed["payment"], "evt-audit-provider").await;
    let at_provider = placed["payment"]["id"].as_i64().unwrap();
    sqlx::query("UPDATE payments SET provider = 'stripe', provider_ref = 'pi_audit' WHERE id = $1")
        .bind(at_provider)
        .execute(app.shop.ordo.db.pool())
        .await
        .unwrap();
    act(
        Method::POST,
        "/api/v1/payments/{id}/ask-provider",
        at_provider,
        None,
        "payment.ask_provider",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/payments/{id}/refund",
        at_provider,
        None,
        "payment.refund",
    )
    .await;
    // Paid, shipped, completed, refund requested and approved, all by staff.
    let placed = act(
        Method::POST,
        "/api/v1/orders",
        none,
        Some(for_customer.clone()),
        "order.create",
    )
    .await;
    let shipped = placed["order"]["id"].as_i64().unwrap();
    app.pay(&placed["payment"], "evt-audit-shipped").await;
    act(
        Method::POST,
        "/api/v1/orders/{id}/ship",
        shipped,
        Some(json!({"carrier": "DHL", "tracking_number": "T-1"})),
        "order.ship",
    )
    .await;
    // WeChat refused its shipping information until ordo gave up: staff send it again.
    sqlx::query(
        "INSERT INTO wechat_shipping_uploads (order_id, payment_id, status, attempts, created_at, updated_at)
         VALUES ($1, $2, 'dead', 10, 0, 0)",
    )
    .bind(shipped)
    .bind(placed["payment"]["id"].as_i64().unwrap())
    .execute(app.shop.ordo.db.pool())
    .await
    .unwrap();
    act(
        Method::POST,
        "/api/v1/orders/{id}/wechat-shipping/retry",
        shipped,
        None,
        "order.wechat_shipping_retry",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/orders/{id}/complete",
        shipped,
        None,
        "order.complete",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/orders/{id}/refund",
        shipped,
        Some(json!({"reason": "broken"})),
        "order.refund_request",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/orders/{id}/refund/approve",
        shipped,
        Some(json!({"reason": "agreed"})),
        "order.refund_approve",
    )
    .await;
    // Paid, refund requested and rejected.
    let placed = act(
        Method::POST,
        "/api/v1/orders",
        none,
        Some(for_customer),
        "order.create",
    )
    .await;
    let rejected = placed["order"]["id"].as_i64().unwrap();
    app.pay(&placed["payment"], "evt-audit-rejected").await;
    act(
        Method::POST,
        "/api/v1/orders/{id}/refund",
        rejected,
        Some(json!({"reason": "changed my mind"})),
        "order.refund_request",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/orders/{id}/refund/reject",
        rejected,
        Some(json!({"reason": "used"})),
        "order.refund_reject",
    )
    .await;

    let delivery = app
        .shop
        .count("SELECT MAX(id) FROM webhook_deliveries")
        .await;
    act(
        Method::POST,
        "/api/v1/webhook-deliveries/{id}/redeliver",
        delivery,
        None,
        "webhook_delivery.redeliver",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/webhook-endpoints/{id}/replay",
        endpoint,
        Some(json!({"since": "2026-11-25T00:00:00Z", "until": "2026-11-26T00:00:00Z"})),
        "webhook_endpoint.replay",
    )
    .await;
    act(
        Method::DELETE,
        "/api/v1/webhook-endpoints/{id}",
        endpoint,
        None,
        "webhook_endpoint.delete",
    )
    .await;

    let token = act(
        Method::POST,
        "/api/v1/tokens",
        none,
        Some(json!({"name": "ops", "role": "staff"})),
        "token.create",
    )
    .await;
    act(
        Method::DELETE,
        "/api/v1/tokens/{id}",
        token["id"].as_i64().unwrap(),
        None,
        "token.revoke",
    )
    .await;
    act(
        Method::POST,
        "/api/v1/sweeps",
        none,
        Some(json!({"dry_run": true})),
        "sweep.run",
    )
    .await;

    // Every operation of the API that changes something was called by staff here, but the
    // providers' signed notifications and opening a payment (the owner's alone).
    let (_, doc) = ordo::http::router(ordo::http::AppState::new(app.shop.ordo.clone()));
    let mut changing = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if path.starts_with("/api/v1/")
                && method != "get"
                && !matches!(
                    path.as_str(),
                    "/api/v1/payments/webhook"
                        | "/api/v1/payments/wechatpay/notify"
                        | "/api/v1/payments/alipay/notify"
                        | "/api/v1/payments/stripe/webhook"
                        | "/api/v1/orders/{id}/payments"
                )
            {
                changing.insert((method.clone(), path.clone()));
            }
        }
    }
    assert_eq!(called, changing, "staff actions this test does not call");
    // Customers' own actions are not staff actions.
    app.place(json!([{"product_id": p, "quantity": 1}])).await;

    for (request_id, action) in &actions {
        let rows = app
            .shop
            .ordo
            .audit_log(
                app.shop.staff(),
                &AuditFilter {
                    request_id: Some(request_id.clone()),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{request_id} {action}: {rows:?}");
        assert_eq!(&rows[0].action, action);
        assert_eq!(rows[0].actor, format!("user:{}", app.shop.staff.id));
    }
    let (status, page) = app
        .call(
            Method::GET,
            "/api/v1/audit-log?action=order.cancel",
            app.staff(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["detail"]["reason"], "asked by phone");
    let (status, _) = app
        .call(Method::GET, "/api/v1/audit-log", app.customer(), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let all = app
        .shop
        .count("SELECT COUNT(*) FROM audit_log WHERE request_id LIKE 'audit-%'")
        .await;
    assert_eq!(all, actions.len() as i64);
}
