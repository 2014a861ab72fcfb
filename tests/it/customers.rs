//! Customers, shipping addresses and order-line snapshots over real HTTP, on both
//! databases: the shop's backend creates a customer by its own id (one customer however
//! many calls race) and mints its token, which places orders as that customer; every bad
//! address field is a 422 naming it with nothing written; lines keep what was ordered;
//! staff correct an address until the order ships; customers are found by name, phone or
//! external id; and a personal-data erasure leaves the phone number and the address
//! nowhere in the database (a dump of the SQLite file, a `pg_dump`), events and audit rows
//! included, while amounts, history and the ledger stay and `ordo check` is clean.

use crate::api::TestApp;
use crate::helpers::{Backend, TestShop};
use crate::on_both_databases;
use ordo::audit::AuditFilter;
use ordo::domain::OrderStatus;
use ordo::orders::TransitionInput;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_databases!(
    twenty_upserts_at_once_make_one_customer,
    a_minted_token_places_orders_as_that_customer,
    every_bad_address_field_is_named_and_nothing_is_written,
    order_lines_keep_what_was_ordered,
    staff_correct_an_address_until_the_order_ships,
    customers_are_found_by_name_phone_or_external_id,
    erasure_leaves_the_phone_and_address_nowhere,
    an_address_is_required_when_the_shop_says_so,
);

const PHONE: &str = "+86 139 1234 5678";
const PHONE_DIGITS: &str = "13912345678";
const LINE: &str = "世纪大道 100 号 12 楼";
const RECIPIENT: &str = "王小明";
const OPENID: &str = "oErase_openid_0123456789";
/// The address an order was placed with before staff corrected it.
const OLD_LINE: &str = "旧地址 1 号";

fn address() -> Value {
    json!({"name": RECIPIENT, "phone": PHONE, "province": "上海市", "city": "上海市",
           "district": "浦东新区", "line": LINE, "postal_code": "200120"})
}

async fn upsert(app: &TestApp, external_id: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/api/v1/customers/by-external-id/{external_id}"),
        app.staff(),
        Some(body),
    )
    .await
}

/// A customer made by the shop's backend, and its token.
async fn customer_with_token(app: &TestApp, external_id: &str, name: &str) -> (i64, String) {
    let (status, customer) = upsert(
        app,
        external_id,
        json!({"display_name": name, "phone": PHONE, "wechat_openid": OPENID}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");
    let id = customer["id"].as_i64().unwrap();
    let (status, token) = app
        .call(
            Method::POST,
            &format!("/api/v1/customers/{id}/tokens"),
            app.staff(),
            Some(json!({"expires_in": "30d"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    (id, token["token"].as_str().unwrap().to_owned())
}

async fn place(app: &TestApp, token: &str, product: i64, address: Option<Value>) -> Value {
    let mut body = json!({"items": [{"product_id": product, "quantity": 2}]});
    if let Some(address) = address {
        body["shipping_address"] = address;
    }
    let (status, placed) = app
        .call(Method::POST, "/api/v1/orders", Some(token), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    placed
}

async fn twenty_upserts_at_once_make_one_customer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let calls = (0..20).map(|i| {
        let app = &app;
        async move {
            upsert(
                app,
                "shop-user-42",
                json!({"display_name": format!("Customer {}", i % 2), "phone": PHONE}),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{answers:?}"
    );
    let id = answers[0].1["id"].as_i64().unwrap();
    assert!(answers.iter().all(|(_, c)| c["id"] == id), "{answers:?}");
    assert_eq!(
        app.shop
            .count("SELECT COUNT(*) FROM users WHERE external_id = 'shop-user-42'")
            .await,
        1
    );
    // Called again: the same customer, updated; an omitted field is left, null clears.
    let (status, again) = upsert(
        &app,
        "shop-user-42",
        json!({"display_name": "王小明", "wechat_openid": OPENID}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], id);
    assert_eq!(again["display_name"], "王小明");
    assert_eq!(again["phone"], PHONE);
    let (_, cleared) = upsert(
        &app,
        "shop-user-42",
        json!({"display_name": "王小明", "phone": null}),
    )
    .await;
    assert_eq!(cleared["phone"], Value::Null);
    assert_eq!(cleared["wechat_openid"], OPENID);
    // Every upsert is a staff action, and the audit keeps no personal data.
    let audit = app
        .shop
        .ordo
        .audit_log(
            app.shop.staff(),
            &AuditFilter {
                action: Some("customer.upsert".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 22);
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(PHONE) && !text.contains("王小明"), "{text}");
    // Bad input names the field; customers may not call; an external id of staff is 409.
    for (body, field) in [
        (json!({"display_name": " "}), "display_name"),
        (json!({"display_name": "x", "phone": "12ab"}), "phone"),
        (
            json!({"display_name": "x", "wechat_openid": "bad openid"}),
            "wechat_openid",
        ),
        (json!({"phone": PHONE}), "display_name"),
    ] {
        let (status, problem) = upsert(&app, "shop-user-43", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/v1/customers/by-external-id/x",
            app.customer(),
            Some(json!({"display_name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    sqlx::query("UPDATE users SET external_id = 'staff-1' WHERE id = $1")
        .bind(app.shop.staff.id)
        .execute(app.shop.ordo.db.pool())
        .await
        .unwrap();
    let (status, _) = upsert(&app, "staff-1", json!({"display_name": "x"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

async fn a_minted_token_places_orders_as_that_customer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let product = app.create_product("MUG", 1_250, 10).await;
    let (id, token) = customer_with_token(&app, "shop-user-7", "Ada").await;
    let placed = place(&app, &token, product, None).await;
    assert_eq!(placed["order"]["user_id"], id);
    // The token sees its own orders and no one else's.
    let other = place(&app, &app.shop.customer_token, product, None).await;
    let (status, mine) = app
        .call(Method::GET, "/api/v1/orders", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<i64> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![placed["order"]["id"].as_i64().unwrap()]);
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/v1/orders/{}", other["order"]["id"]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Staff see the customer; a token for staff, or for no one, is 404.
    let (status, customer) = app
        .call(
            Method::GET,
            &format!("/api/v1/customers/{id}"),
            app.staff(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(customer["external_id"], "shop-user-7");
    assert_eq!(customer["wechat_openid"], OPENID);
    for who in [app.shop.staff.id, 999_999] {
        let (status, _) = app
            .call(
                Method::POST,
                &format!("/api/v1/customers/{who}/tokens"),
                app.staff(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, problem) = app
        .call(
            Method::POST,
            &format!("/api/v1/customers/{id}/tokens"),
            app.staff(),
            Some(json!({"expires_in": "forever"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "expires_in");
    // Existing users are customers with no external id.
    let (status, old) = app
        .call(
            Method::GET,
            &format!("/api/v1/customers/{}", app.shop.customer.id),
            app.staff(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(old["external_id"], Value::Null);
    assert_eq!(old["display_name"], "customer");
}

async fn every_bad_address_field_is_named_and_nothing_is_written(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let product = app.create_product("MUG", 1_250, 10).await;
    let token = app.shop.customer_token.clone();
    app.shop.use_tokens(&[&token, &app.shop.staff_token]).await;
    let before = app.shop.snapshot().await;
    let cases: Vec<(&str, Value)> = vec![
        ("name", json!("")),
        ("name", json!("名".repeat(51))),
        ("name", json!("a\nb")),
        ("phone", json!("138-abc-8000")),
        ("phone", json!("123")),
        ("phone", json!(13800138000_i64)),
        ("country", json!("XX")),
        ("country", json!("CHN")),
        ("province", json!("")),
        ("province", json!("省".repeat(51))),
        ("city", json!("\u{1b}[31m")),
        ("district", json!("区".repeat(51))),
        ("town", json!("镇\u{0}")),
        ("line", json!(" ")),
        ("line", json!("路".repeat(201))),
        ("postal_code", json!("2001")),
        ("postal_code", json!("200<20")),
    ];
    for (field, value) in cases {
        let mut address = address();
        address[field] = value.clone();
        let (status, problem) = app
            .call(
                Method::POST,
                "/api/v1/orders",
                Some(&token),
                Some(json!({"items": [{"product_id": product, "quantity": 1}],
                            "shipping_address": address})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} = {value}: {problem}"
        );
        assert_eq!(
            problem["field"],
            format!("shipping_address.{field}"),
            "{field} = {value}: {problem}"
        );
    }
    // A field missing or unknown is named too.
    for (change, field) in [
        ("phone", "shipping_address.phone"),
        ("line", "shipping_address.line"),
    ] {
        let mut address = address();
        address.as_object_mut().unwrap().remove(change);
        let (status, problem) = app
            .call(
                Method::POST,
                "/api/v1/orders",
                Some(&token),
                Some(json!({"items": [{"product_id": product, "quantity": 1}],
                            "shipping_address": address})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["field"], field, "{problem}");
    }
    let mut address = address();
    address["floor"] = json!(12);
    let (status, problem) = app
        .call(
            Method::POST,
            "/api/v1/orders",
            Some(&token),
            Some(json!({"items": [{"product_id": product, "quantity": 1}],
                        "shipping_address": address})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "shipping_address.floor");
    assert_eq!(
        app.shop.snapshot().await,
        before,
        "a refused order wrote something"
    );

    // A good one is kept as given (trimmed, the country filled in).
    let placed = place(&app, &token, product, Some(address_with_country())).await;
    let kept = &placed["order"]["shipping_address"];
    assert_eq!(kept["name"], RECIPIENT, "{placed}");
    assert_eq!(kept["country"], "CN");
    assert_eq!(kept["phone"], PHONE);
    assert_eq!(kept["town"], Value::Null);
}

fn address_with_country() -> Value {
    let mut a = address();
    a["name"] = json!(format!("  {RECIPIENT} "));
    a["country"] = json!("cn");
    a
}

async fn order_lines_keep_what_was_ordered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let product = app.create_product("TEA-1", 16_800, 10).await;
    let placed = place(&app, &app.shop.customer_token, product, Some(address())).await;
    let id = placed["order"]["id"].as_i64().unwrap();
    assert_eq!(placed["order"]["items"][0]["sku"], "TEA-1");
    assert_eq!(placed["order"]["items"][0]["name"], "Widget");
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/products/{product}"),
            app.staff(),
            Some(json!({"name": "Renamed widget", "price_cents": 99})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, order) = app
        .call(
            Method::GET,
            &format!("/api/v1/orders/{id}"),
            app.staff(),
            None,
        )
        .await;
    let line = &order["items"][0];
    assert_eq!(line["name"], "Widget", "{order}");
    assert_eq!(line["sku"], "TEA-1");
    assert_eq!(line["unit_price_cents"], 16_800);
    // The events tell the same: the order as it was placed, with its address.
    let events = app
        .shop
        .ordo
        .events(
            app.shop.staff(),
            &ordo::events::EventFilter {
                order_id: Some(id),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let created = &events[0].data["order"];
    assert_eq!(created["items"][0]["name"], "Widget");
    assert_eq!(created["shipping_address"]["line"], LINE);
    // Lines of orders placed before the snapshot existed got their product's names.
    assert_eq!(
        app.shop
            .count("SELECT COUNT(*) FROM order_items WHERE sku IS NULL OR name IS NULL")
            .await,
        0
    );
    app.shop.assert_check_clean().await;
}

async fn staff_correct_an_address_until_the_order_ships(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let shop = &app.shop;
    let product = app.create_product("MUG", 1_250, 10).await;
    let placed = place(&app, &shop.customer_token, product, Some(address())).await;
    let id = placed["order"]["id"].as_i64().unwrap();
    let path = format!("/api/v1/orders/{id}/shipping-address");
    let mut corrected = address();
    corrected["line"] = json!("陆家嘴环路 1000 号");
    corrected["phone"] = json!("021-6123 4567");
    // The customer may not; a bad field is named (the body is the address).
    let (status, _) = app
        .call(Method::PUT, &path, app.customer(), Some(corrected.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut bad = corrected.clone();
    bad["phone"] = json!("call me");
    let (status, problem) = app.call(Method::PUT, &path, app.staff(), Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "phone");
    let (status, order) = app
        .call(Method::PUT, &path, app.staff(), Some(corrected.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["shipping_address"]["line"], "陆家嘴环路 1000 号");
    // Told to receivers, audited without the values.
    let events = shop
        .ordo
        .events(
            shop.staff(),
            &ordo::events::EventFilter {
                order_id: Some(id),
                kind: Some(ordo::events::EventType::OrderAddressChanged),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["seq"], 2);
    assert_eq!(events[0].data["previous_status"], "pending");
    assert_eq!(
        events[0].data["changed"],
        json!(["phone", "line"]),
        "{:?}",
        events[0].data
    );
    let audit = shop
        .ordo
        .audit_log(
            shop.staff(),
            &AuditFilter {
                action: Some("order.address_change".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].detail["changed"], json!(["phone", "line"]));
    assert!(!audit[0].detail.to_string().contains("6123"));
    // Paid: still possible. Shipped: 409, and nothing changes.
    shop.pay_order(id).await;
    let (status, _) = app
        .call(Method::PUT, &path, app.staff(), Some(address()))
        .await;
    assert_eq!(status, StatusCode::OK);
    shop.ordo
        .transition(
            shop.staff(),
            id,
            OrderStatus::Shipped,
            &TransitionInput {
                carrier: Some("SF".into()),
                tracking_number: Some("SF1".into()),
                ..TransitionInput::default()
            },
        )
        .await
        .unwrap();
    let before = shop.snapshot().await;
    let (status, problem) = app
        .call(Method::PUT, &path, app.staff(), Some(corrected))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("shipped"));
    assert_eq!(shop.snapshot().await, before);
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/v1/orders/999999/shipping-address",
            app.staff(),
            Some(address()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    shop.assert_check_clean().await;
}

async fn customers_are_found_by_name_phone_or_external_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (id, name, phone) in [
        ("u-1", "王小明", "138 0013 8000"),
        ("u-2", "Ada Lovelace", "+44 20 7946 0000"),
        ("u-3", "王芳", "139-1000-2000"),
    ] {
        let (status, _) = upsert(&app, id, json!({"display_name": name, "phone": phone})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let find = async |q: &str| -> Vec<String> {
        let (status, page) = app
            .call(
                Method::GET,
                &format!("/api/v1/customers?q={}", urlencode(q)),
                app.staff(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["external_id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(find("王").await, vec!["u-3", "u-1"]);
    assert_eq!(find("lovelace").await, vec!["u-2"]);
    assert_eq!(find("13800138000").await, vec!["u-1"]);
    assert_eq!(find("1000 2000").await, vec!["u-3"]);
    assert_eq!(find("u-2").await, vec!["u-2"]);
    assert!(find("%").await.is_empty(), "LIKE wildcards are literal");
    assert!(find("nobody").await.is_empty());
    // Paging, newest first.
    let (_, page) = app
        .call(Method::GET, "/api/v1/customers?limit=2", app.staff(), None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = app
        .call(
            Method::GET,
            &format!("/api/v1/customers?limit=2&cursor={cursor}"),
            app.staff(),
            None,
        )
        .await;
    // u-1, then the shop's own customer (no external id).
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest["items"][0]["external_id"], "u-1");
    let (status, _) = app
        .call(Method::GET, "/api/v1/customers", app.customer(), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

fn urlencode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A receiver that answers every webhook with the body it was sent.
async fn echo_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(|body: axum::body::Bytes| async move { body }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/hook")
}

/// Every trace of the customer's personal data that a dump of the database would show.
fn personal_data() -> Vec<String> {
    vec![
        PHONE.to_owned(),
        PHONE_DIGITS.to_owned(),
        LINE.to_owned(),
        RECIPIENT.to_owned(),
        OPENID.to_owned(),
        OLD_LINE.to_owned(),
    ]
}

/// The whole database as bytes: the SQLite file and its write-ahead log as they are on
/// disk, or what `pg_dump` writes.
fn dump(shop: &TestShop) -> Vec<u8> {
    let url = &shop.database.url;
    if url.starts_with("sqlite:") {
        let path = ordo::db::sqlite_path(url);
        let mut bytes = std::fs::read(&path).expect("the database file");
        for suffix in ["-wal", "-journal"] {
            if let Ok(more) = std::fs::read(format!("{}{suffix}", path.display())) {
                bytes.extend(more);
            }
        }
        bytes
    } else {
        let out = std::process::Command::new("pg_dump")
            .arg("--no-owner")
            .arg(url)
            .output()
            .expect("pg_dump (Debian: postgresql-client)");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

fn found_in(dump: &[u8], text: &str) -> bool {
    dump.windows(text.len()).any(|w| w == text.as_bytes())
}

async fn erasure_leaves_the_phone_and_address_nowhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let shop = &app.shop;
    let hook = echo_receiver().await;
    shop.ordo
        .create_endpoint(
            shop.staff(),
            &ordo::events::endpoints::NewEndpoint {
                url: hook,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let product = app.create_product("TEA", 16_800, 10).await;
    let (id, token) = customer_with_token(&app, "shop-user-9", RECIPIENT).await;
    // A completed order, a cancelled one, and one still open; the address corrected once.
    let mut moved = address();
    moved["line"] = json!(OLD_LINE);
    let done = place(&app, &token, product, Some(moved)).await["order"]["id"]
        .as_i64()
        .unwrap();
    app.call(
        Method::PUT,
        &format!("/api/v1/orders/{done}/shipping-address"),
        app.staff(),
        Some(address()),
    )
    .await;
    shop.pay_order(done).await;
    for to in [OrderStatus::Shipped, OrderStatus::Completed] {
        shop.ordo
            .transition(
                shop.staff(),
                done,
                to,
                &TransitionInput {
                    carrier: Some("SF".into()),
                    tracking_number: Some("SF9".into()),
                    ..TransitionInput::default()
                },
            )
            .await
            .unwrap();
    }
    let cancelled = place(&app, &token, product, Some(address())).await["order"]["id"]
        .as_i64()
        .unwrap();
    shop.ordo
        .cancel_order(shop.staff(), cancelled, Some("changed mind".into()))
        .await
        .unwrap();
    let open = place(&app, &token, product, Some(address())).await["order"].clone();
    // Receivers got the events, and echoed them back into the delivery attempts.
    let dispatcher = crate::events::dispatcher(&shop.ordo);
    assert!(crate::events::drain(&dispatcher).await > 0);
    assert!(
        found_in(&dump(shop), LINE),
        "the address is in the database"
    );
    let echoed = shop
        .count("SELECT COUNT(*) FROM webhook_attempts WHERE response LIKE '%1234 5678%'")
        .await;
    assert!(echoed > 0, "receivers' answers hold the phone");

    // An order still open: refused, naming it, nothing changed.
    let before = shop.snapshot().await;
    let path = format!("/api/v1/customers/{id}/personal-data");
    let (status, problem) = app.call(Method::DELETE, &path, app.staff(), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(open["number"].as_str().unwrap()),
        "{detail}"
    );
    assert_eq!(shop.snapshot().await, before);
    let (status, _) = app.call(Method::DELETE, &path, app.customer(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Once it is finished, the erasure goes through.
    shop.ordo
        .cancel_order(shop.staff(), open["id"].as_i64().unwrap(), None)
        .await
        .unwrap();
    let ledger_before = shop.ledger_sum(product).await;
    let history_before = shop
        .count("SELECT COUNT(*) FROM order_status_history")
        .await;
    let (status, erased) = app.call(Method::DELETE, &path, app.staff(), None).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["orders"], 3);
    assert!(erased["events"].as_i64().unwrap() >= 6, "{erased}");
    assert_eq!(erased["customer"]["phone"], Value::Null);
    assert_eq!(erased["customer"]["wechat_openid"], Value::Null);
    assert_eq!(erased["customer"]["display_name"], "[erased]");
    assert!(erased["customer"]["erased_at"].is_string());
    // Amounts, history and the ledger stay; the address is marked erased.
    let (_, order) = app
        .call(
            Method::GET,
            &format!("/api/v1/orders/{done}"),
            app.staff(),
            None,
        )
        .await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["total_cents"], 33_600);
    assert_eq!(order["shipping_address"]["erased"], true);
    assert_eq!(order["shipping_address"]["country"], "CN");
    assert_eq!(order["shipping_address"]["line"], "");
    assert_eq!(shop.ledger_sum(product).await, ledger_before);
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM order_status_history")
            .await,
        history_before
    );
    // ... and the phone, the address, the name and the openid are nowhere: not in the
    // tables, not in the event log, not in the audit rows, not in the file's free pages.
    let dumped = dump(shop);
    for secret in personal_data() {
        assert!(
            !found_in(&dumped, &secret),
            "{secret:?} is still in the database"
        );
    }
    let (_, events) = app
        .call(
            Method::GET,
            &format!("/api/v1/events?order_id={done}"),
            app.staff(),
            None,
        )
        .await;
    assert!(
        events["items"].as_array().is_some_and(|e| e.len() >= 4),
        "{events}"
    );
    assert!(!events.to_string().contains(PHONE_DIGITS));
    let audit = shop
        .ordo
        .audit_log(
            shop.staff(),
            &AuditFilter {
                action: Some("customer.erase".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].object_id.as_deref(), Some(id.to_string().as_str()));
    shop.assert_check_clean().await;
    // The customer may come back: the shop's backend gives its data again.
    let (status, back) = upsert(
        &app,
        "shop-user-9",
        json!({"display_name": "王小明", "phone": "138 0013 8000"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(back["id"], id);
    assert_eq!(back["erased_at"], Value::Null);
    shop.assert_check_clean().await;
}

async fn an_address_is_required_when_the_shop_says_so(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let product = shop.product(10, 100).await;
    let mut ordo = shop.ordo.clone();
    ordo.policy.require_shipping_address = true;
    let refused = ordo
        .place_order(shop.owner(), &shop.new_order(&[(product.id, 1)]))
        .await;
    match refused {
        Err(ordo::Error::Validation { field, .. }) => assert_eq!(field, "shipping_address"),
        other => panic!("{other:?}"),
    }
    let mut new = shop.new_order(&[(product.id, 1)]);
    new.shipping_address = Some(serde_json::from_value(address()).unwrap());
    let placed = ordo.place_order(shop.owner(), &new).await.unwrap();
    assert_eq!(placed.order.order.shipping_address.unwrap().line, LINE);
}
