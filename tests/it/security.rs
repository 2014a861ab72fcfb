//! Security properties, on both databases: SQL metacharacters in every string field are
//! stored and returned verbatim; customers reach no staff endpoint and nothing of another
//! customer's; tokens cannot be recovered from the database.

use crate::api::{SECRET, TestApp};
use crate::helpers::Backend;
use crate::on_both_databases;
use ordo::domain::UserRole;
use ordo::http::sign_webhook;
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_databases!(
    sql_metacharacters_round_trip_verbatim,
    customers_reach_no_staff_endpoint,
    tokens_are_not_in_the_database,
);

const NASTY: &[&str] = &[
    "'; DROP TABLE orders; --",
    "Robert'); DELETE FROM products WHERE ('1'='1",
    "\" OR \"1\"=\"1\" -- \\' \\\" %_ $1 ? :name @p",
    "ünïcødé ✓ 🙂 \u{202e}reversed\nnew line\ttab",
];

async fn sql_metacharacters_round_trip_verbatim(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (i, nasty) in NASTY.iter().enumerate() {
        let sku = format!("SKU'\";--%_{i}");
        let single_line = nasty.replace(['\n', '\t'], " ");
        let (status, product) = app
            .call(
                Method::POST,
                "/api/v1/products",
                app.staff(),
                Some(json!({"sku": sku, "name": single_line, "price_cents": 100, "currency": "EUR", "stock": 50})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{product}");
        assert_eq!(product["sku"], sku.as_str());
        assert_eq!(product["name"], single_line.as_str());
        let p = product["id"].as_i64().unwrap();
        let (_, fetched) = app
            .call(
                Method::GET,
                &format!("/api/v1/products/{p}"),
                app.customer(),
                None,
            )
            .await;
        assert_eq!(fetched["sku"], sku.as_str());
        let (_, patched) = app
            .call(
                Method::PATCH,
                &format!("/api/v1/products/{p}"),
                app.staff(),
                Some(json!({"name": format!("{single_line}!")})),
            )
            .await;
        assert_eq!(patched["name"], format!("{single_line}!"));
        let (status, _) = app
            .call(
                Method::POST,
                &format!("/api/v1/products/{p}/stock-adjustments"),
                app.staff(),
                Some(json!({"delta": 1, "reason": single_line})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, ledger) = app
            .call(
                Method::GET,
                &format!("/api/v1/products/{p}/stock-movements"),
                app.staff(),
                None,
            )
            .await;
        assert_eq!(ledger["items"][0]["note"], single_line.as_str());

        // Order note, cancel reason (order and history), carrier and tracking, refund reason.
        let key = format!("key'\";--{i}");
        let response = app
            .client
            .post(format!("{}/api/v1/orders", app.base))
            .bearer_auth(&app.shop.customer_token)
            .header("Idempotency-Key", &key)
            .json(&json!({"items": [{"product_id": p, "quantity": 1}], "note": nasty}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let placed: serde_json::Value = response.json().await.unwrap();
        assert_eq!(placed["order"]["note"], *nasty);
        let id = placed["order"]["id"].as_i64().unwrap();
        let (_, cancelled) = app
            .call(
                Method::POST,
                &format!("/api/v1/orders/{id}/cancel"),
                app.customer(),
                Some(json!({"reason": nasty})),
            )
            .await;
        assert_eq!(cancelled["cancel_reason"], *nasty);
        let (_, history) = app
            .call(
                Method::GET,
                &format!("/api/v1/orders/{id}/history"),
                app.customer(),
                None,
            )
            .await;
        assert_eq!(history[1]["note"], *nasty);

        let (_, placed) = app.place(json!([{"product_id": p, "quantity": 1}])).await;
        let id = placed["order"]["id"].as_i64().unwrap();
        let event_id = format!("evt'\";-- {i}");
        let body = json!({"event_id": event_id, "payment_id": placed["payment"]["id"], "status": "succeeded", "amount_cents": placed["payment"]["amount_cents"]}).to_string();
        let (status, _) = app
            .webhook(
                &body,
                Some(&sign_webhook(SECRET.as_bytes(), body.as_bytes())),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, shipped) = app
            .call(
                Method::POST,
                &format!("/api/v1/orders/{id}/ship"),
                app.staff(),
                Some(json!({"carrier": single_line, "tracking_number": sku})),
            )
            .await;
        assert_eq!(shipped["carrier"], single_line.as_str());
        assert_eq!(shipped["tracking_number"], sku.as_str());
        assert_eq!(shipped["payments"][0]["provider_ref"], event_id.as_str());
        let (_, refunding) = app
            .call(
                Method::POST,
                &format!("/api/v1/orders/{id}/refund"),
                app.customer(),
                Some(json!({"reason": nasty})),
            )
            .await;
        assert_eq!(refunding["status"], "refunding");
        let (_, history) = app
            .call(
                Method::GET,
                &format!("/api/v1/orders/{id}/history"),
                app.customer(),
                None,
            )
            .await;
        assert_eq!(history.as_array().unwrap().last().unwrap()["note"], *nasty);
    }
    let (user, _) = app
        .shop
        .ordo
        .create_user_with_token(NASTY[0], UserRole::Customer)
        .await
        .unwrap();
    assert_eq!(user.name, NASTY[0]);
    // Every table is still there and consistent.
    app.shop.assert_check_clean().await;
    assert!(app.shop.count("SELECT COUNT(*) FROM orders").await >= 8);
}

async fn customers_reach_no_staff_endpoint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = app.create_product("STAFF-ONLY", 100, 10).await;
    let (_, placed) = app.place(json!([{"product_id": p, "quantity": 1}])).await;
    let id = placed["order"]["id"].as_i64().unwrap();
    app.pay(&placed["payment"], "evt-staff-only").await;
    let before = app.shop.snapshot().await;
    let staff_only = [
        (
            Method::POST,
            "/api/v1/products".to_owned(),
            Some(json!({"sku": "X", "name": "x", "price_cents": 1, "currency": "EUR", "stock": 1})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/products/{p}"),
            Some(json!({"price_cents": 1})),
        ),
        (
            Method::POST,
            format!("/api/v1/products/{p}/stock-adjustments"),
            Some(json!({"delta": 5})),
        ),
        (
            Method::GET,
            format!("/api/v1/products/{p}/stock-movements"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/orders/{id}/ship"),
            Some(json!({"carrier": "x", "tracking_number": "y"})),
        ),
        (Method::POST, format!("/api/v1/orders/{id}/cancel"), None),
        (
            Method::POST,
            format!("/api/v1/orders/{id}/refund/approve"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/orders/{id}/refund/reject"),
            None,
        ),
        (
            Method::GET,
            "/api/v1/payments?refund_required=true".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/sweeps".to_owned(),
            Some(json!({"dry_run": true})),
        ),
    ];
    for (method, path, body) in staff_only {
        // Refused for who calls (403), never for the state of the order (409): the role
        // check comes first.
        let (status, problem) = app.call(method.clone(), &path, app.customer(), body).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {status} {problem}"
        );
    }
    assert_eq!(app.shop.snapshot().await, before);
}

async fn tokens_are_not_in_the_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Tokens made every way there is, and used: by the shop, over the API (audited), and
    // signed in to the console (a session).
    let (status, issued) = app
        .call(
            Method::POST,
            "/api/v1/tokens",
            app.staff(),
            Some(json!({"name": "issued", "role": "staff"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let issued = issued["token"]
        .as_str()
        .expect("the new token, once")
        .to_owned();
    let tokens = [
        app.shop.staff_token.clone(),
        app.shop.customer_token.clone(),
        issued,
    ];
    let p = app.create_product("TOKENS-1", 100, 5).await;
    app.place(json!([{"product_id": p, "quantity": 1}])).await;
    for token in &tokens {
        let (status, _) = app
            .call(Method::GET, "/api/v1/products", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let signed_in = app
        .client
        .post(format!("{}/console/login", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", tokens[2]))
        .send()
        .await
        .unwrap();
    assert!(!signed_in.status().is_server_error());
    assert!(
        app.shop
            .count("SELECT COUNT(*) FROM console_sessions")
            .await
            > 0,
        "the console sign-in made a session"
    );
    // Every row of every table, as text: no token, and no part of one.
    let everything = app.shop.snapshot().await;
    for token in &tokens {
        assert!(
            !everything.contains(token.as_str()),
            "a table holds a token"
        );
        assert!(
            !everything.contains(&token[5..30]),
            "a table holds part of a token"
        );
    }
    let (status, _) = app
        .call(
            Method::GET,
            "/api/v1/orders",
            Some(&ordo::auth::token_hash(&tokens[1])),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the stored hash is not a token"
    );
}
