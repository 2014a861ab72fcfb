//! Hostile input at scale: proptest-generated requests against every endpoint, and fuzzed
//! webhook bodies and signatures. No answer may be a 5xx; every error is problem+json.
//! `ORDO_FUZZ_CASES` sets the number of cases (default 1500 and 500).

use crate::api::{SECRET, TestApp};
use crate::helpers::Backend;
use ordo::http::sign_webhook;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/api/v1/products"),
    ("GET", "/api/v1/products"),
    ("GET", "/api/v1/products/{id}"),
    ("PATCH", "/api/v1/products/{id}"),
    ("POST", "/api/v1/products/{id}/stock-adjustments"),
    ("GET", "/api/v1/products/{id}/stock-movements"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders"),
    ("GET", "/api/v1/orders/{id}"),
    ("GET", "/api/v1/orders/{id}/history"),
    ("POST", "/api/v1/orders/{id}/cancel"),
    ("POST", "/api/v1/orders/{id}/ship"),
    ("POST", "/api/v1/orders/{id}/complete"),
    ("POST", "/api/v1/orders/{id}/refund"),
    ("POST", "/api/v1/orders/{id}/refund/approve"),
    ("POST", "/api/v1/orders/{id}/refund/reject"),
    ("POST", "/api/v1/orders/{id}/payments"),
    ("GET", "/api/v1/payments"),
    ("POST", "/api/v1/sweeps"),
    ("DELETE", "/api/v1/orders/{id}"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
];

fn cases(default: u32) -> u32 {
    std::env::var("ORDO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Strings that have broken services before.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("'; DROP TABLE orders; --".to_owned()),
        Just("\" OR 1=1 --".to_owned()),
        Just("\0".to_owned()),
        Just("a\0b".to_owned()),
        Just("\u{202e}\u{fffd}🙂".to_owned()),
        Just("$1 ? %s %n {}".to_owned()),
        Just("x".repeat(5000)),
        any::<String>(),
        "[a-zA-Z0-9 _-]{0,30}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        Just(json!(u64::MAX)),
        nasty_string().prop_map(Value::from),
        Just(Value::Null),
        Just(json!(true)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![number(), nasty_string().prop_map(Value::from)];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::hash_map(
                prop_oneof![
                    Just("items".to_owned()),
                    Just("product_id".to_owned()),
                    Just("quantity".to_owned()),
                    Just("sku".to_owned()),
                    Just("delta".to_owned()),
                    Just("reason".to_owned()),
                    "[a-z_]{1,12}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies shaped like the real ones, with wild values.
fn shaped_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        (number(), number(), nasty_string()).prop_map(|(p, q, note)| json!({"items": [{"product_id": p, "quantity": q}], "note": note})),
        (nasty_string(), nasty_string(), number(), nasty_string(), number())
            .prop_map(|(sku, name, price, currency, stock)| json!({"sku": sku, "name": name, "price_cents": price, "currency": currency, "stock": stock})),
        (number(), nasty_string()).prop_map(|(delta, reason)| json!({"delta": delta, "reason": reason})),
        (nasty_string(), nasty_string()).prop_map(|(c, t)| json!({"carrier": c, "tracking_number": t})),
        nasty_string().prop_map(|r| json!({"reason": r})),
        (any::<bool>(), number()).prop_map(|(d, t)| json!({"dry_run": d, "timeout_minutes": t})),
        (nasty_string(), number()).prop_map(|(n, p)| json!({"name": n, "price_cents": p, "active": "yes"})),
    ]
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    Raw(String),
}

#[derive(Debug, Clone)]
struct Case {
    endpoint: usize,
    id: String,
    query: String,
    token: u8,
    body: Body,
}

fn case() -> impl Strategy<Value = Case> {
    let id = prop_oneof![
        (1i64..6).prop_map(|i| i.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        Just("abc".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("%27%20OR%201%3D1".to_owned()),
        Just("1.5".to_owned()),
    ];
    let query = prop_oneof![
        Just(String::new()),
        Just("?limit=0".to_owned()),
        Just("?limit=-5&cursor=zz".to_owned()),
        Just("?status=paid%27--".to_owned()),
        Just("?refund_required=true".to_owned()),
        Just("?created_before=2026-01-01T00:00:00Z&limit=2".to_owned()),
        "[?][a-z_]{1,8}=[a-zA-Z0-9%]{0,10}",
    ];
    let body = prop_oneof![
        Just(Body::None),
        json_value().prop_map(Body::Json),
        shaped_body().prop_map(Body::Json),
        any::<String>().prop_map(Body::Raw),
    ];
    (0..ENDPOINTS.len(), id, query, 0u8..4, body).prop_map(|(endpoint, id, query, token, body)| {
        Case {
            endpoint,
            id,
            query,
            token,
            body,
        }
    })
}

/// Sends the request: status, content type and body text.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    (
        status,
        content_type,
        response.text().await.unwrap_or_default(),
    )
}

fn check_answer(
    status: u16,
    content_type: Option<String>,
    text: &str,
    what: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{what}: {status} {text}");
    if status >= 400 {
        prop_assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{}: {}",
            what,
            text
        );
        let problem: Value = serde_json::from_str(text)
            .map_err(|e| TestCaseError::fail(format!("{what}: {e}: {text}")))?;
        prop_assert!(
            problem["code"].is_string() && problem["detail"].is_string(),
            "{what}: {text}"
        );
    }
    Ok(())
}

/// Runs `f` on a thread with a roomy stack: the composed strategies are deep in debug builds.
fn with_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(f)
        .expect("thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn generated_requests_never_get_a_5xx() {
    with_big_stack(generated_requests);
}

fn generated_requests() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(async {
        let app = TestApp::spawn(Backend::Sqlite).await;
        for i in 0..3 {
            let p = app.create_product(&format!("FUZZ-{i}"), 100, 1000).await;
            app.place(json!([{"product_id": p, "quantity": 1}])).await;
        }
        app
    });
    let mut runner = TestRunner::new(Config {
        cases: cases(1500),
        failure_persistence: None,
        ..Config::default()
    });
    let tokens = [
        None,
        Some(app.shop.customer_token.clone()),
        Some(app.shop.staff_token.clone()),
        Some("ordo_forged".to_owned()),
    ];
    runner
        .run(&case(), |case| {
            let (method, template) = ENDPOINTS[case.endpoint];
            let path = format!("{}{}", template.replace("{id}", &case.id), case.query);
            let what = format!("{method} {path} {:?}", case.body);
            let (status, ct, text) = rt.block_on(async {
                let mut request = app
                    .client
                    .request(method.parse().unwrap(), format!("{}{path}", app.base));
                if let Some(token) = &tokens[case.token as usize] {
                    request = request.bearer_auth(token);
                }
                request = match &case.body {
                    Body::None => request,
                    Body::Json(v) => request.json(v),
                    Body::Raw(s) => request
                        .header("content-type", "application/json")
                        .body(s.clone()),
                };
                answer(request).await
            });
            check_answer(status, ct, &text, &what)
        })
        .unwrap();
    rt.block_on(app.shop.assert_check_clean());
}

#[test]
fn fuzzed_webhooks_never_get_a_5xx() {
    with_big_stack(fuzzed_webhooks);
}

fn fuzzed_webhooks() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, payment) = rt.block_on(async {
        let app = TestApp::spawn(Backend::Sqlite).await;
        let p = app.create_product("HOOK-FUZZ", 100, 1000).await;
        let (_, placed) = app.place(json!([{"product_id": p, "quantity": 1}])).await;
        (app, placed["payment"]["id"].as_i64().unwrap())
    });
    let mut runner = TestRunner::new(Config {
        cases: cases(500),
        failure_persistence: None,
        ..Config::default()
    });
    let body = prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        any::<String>(),
        (
            nasty_string(),
            prop_oneof![Just(payment), any::<i64>()],
            prop_oneof![
                Just("succeeded".to_owned()),
                Just("failed".to_owned()),
                nasty_string()
            ],
            number()
        )
            .prop_map(|(e, p, s, a)| {
                json!({"event_id": e, "payment_id": p, "status": s, "amount_cents": a}).to_string()
            }),
    ];
    let signature = prop_oneof![Just(None), Just(Some(true)), Just(Some(false)),];
    runner
        .run(&(body, signature, any::<String>()), |(body, sign, junk)| {
            let (status, ct, text) = rt.block_on(async {
                let mut request = app
                    .client
                    .post(format!("{}/api/v1/payments/webhook", app.base))
                    .header("content-type", "application/json")
                    .body(body.clone());
                match sign {
                    Some(true) => {
                        request = request.header(
                            "X-Ordo-Signature",
                            sign_webhook(SECRET.as_bytes(), body.as_bytes()),
                        )
                    }
                    Some(false) => {
                        if let Ok(v) = reqwest::header::HeaderValue::from_str(&junk) {
                            request = request.header("X-Ordo-Signature", v);
                        }
                    }
                    None => {}
                }
                answer(request).await
            });
            if sign != Some(true) {
                prop_assert_eq!(status, 401, "unsigned or forged: {}", text);
            }
            check_answer(status, ct, &text, &body)
        })
        .unwrap();
    rt.block_on(app.shop.assert_check_clean());
}
