//! The workload driver: a seeded random mix of concurrent operations against a real
//! `ordo serve` process over HTTP, optionally with the server SIGKILLed and restarted at
//! random moments, then every invariant checked.
//!
//! Quick versions run in the suite. Longer ones:
//!     ORDO_WORKLOAD_SECONDS=300 ORDO_WORKLOAD_SEED=7 cargo test --release --test it workload -- --nocapture

use crate::helpers::{Backend, TestDatabase};
use ordo::domain::{OrderStatus, UserRole};
use ordo::http::sign_webhook;
use ordo::{Clock, Db, Ordo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "workload-secret";
const PRODUCTS: i64 = 20;
const OPENING_STOCK: i64 = 300;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seed: u64,
    pub seconds: u64,
    pub clients: usize,
    /// SIGKILL and restart the server at random moments.
    pub crashes: bool,
}

impl Plan {
    /// The quick plan, or the one the environment asks for.
    pub fn from_env(crashes: bool) -> Plan {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Plan {
            seed: var("ORDO_WORKLOAD_SEED", rand::random::<u32>() as u64),
            seconds: var("ORDO_WORKLOAD_SECONDS", 6),
            clients: var("ORDO_WORKLOAD_CLIENTS", 32) as usize,
            crashes,
        }
    }
}

/// What the workload saw, for the report and the checks.
#[derive(Debug, Default)]
pub struct Report {
    pub operations: u64,
    pub by_kind: HashMap<&'static str, u64>,
    pub statuses: HashMap<u16, u64>,
    pub connection_errors: u64,
    pub server_errors: Vec<String>,
    pub crashes: u64,
    /// Each SIGKILL the test sent: when it was sent, and when the restarted server answered
    /// `/readyz` again.
    pub crash_windows: Vec<(Instant, Instant)>,
    /// Every operation: when it was sent, when it was answered or failed, its kind and its
    /// status (`None`: no answer, the connection failed).
    pub timeline: Vec<(Instant, Instant, &'static str, Option<u16>)>,
    pub acknowledged_orders: HashSet<i64>,
    pub acknowledged_adjustments: u64,
    pub unacknowledged_adjustments: u64,
    /// event id -> outcomes the webhook answered.
    pub event_outcomes: HashMap<String, Vec<String>>,
    /// Staff actions: (request id, audit action), acknowledged or not.
    pub staff_actions: Vec<(String, &'static str)>,
    pub unacknowledged_staff_actions: Vec<(String, &'static str)>,
}

#[derive(Clone)]
struct KnownOrder {
    id: i64,
    payment_id: i64,
    amount: i64,
    customer: usize,
}

struct Shared {
    orders: Vec<KnownOrder>,
    sent_events: Vec<String>,
    report: Report,
}

struct Server {
    child: Option<Child>,
    port: u16,
    url: String,
}

impl Server {
    fn start(url: &str, port: u16) -> Server {
        let mut server = Server {
            child: None,
            port,
            url: url.to_owned(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .env("ORDO_DATABASE_URL", &self.url)
            .env("ORDO_WEBHOOK_SECRET", SECRET)
            .env("ORDO_UNPAID_TIMEOUT_MINUTES", "0")
            .env("ORDO_PAYMENT_TTL_MINUTES", "0")
            .env("ORDO_SWEEP_INTERVAL_SECONDS", "1")
            .env("ORDO_SWEEP_BATCH_SIZE", "20")
            .env("ORDO_MAX_PENDING_ORDERS_PER_CUSTOMER", "0")
            .env("ORDO_MAX_UNITS_PER_ORDER", "0")
            .env("ORDO_RATE_LIMIT_PER_SECOND", "0")
            .env("ORDO_WEBHOOK_ALLOW_PRIVATE", "true")
            .env("ORDO_WEBHOOK_TIMEOUT_SECONDS", "2")
            .env("ORDO_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ordo serve");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let client = crate::helpers::client();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{}/readyz", self.port))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < until, "ordo serve did not become ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A crash the test causes: the server must still be running (one that exited by
    /// itself is a failure, not a crash to count), and it must die of this SIGKILL.
    fn crash(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        let mut child = self.child.take().expect("a server to crash");
        if let Some(status) = child.try_wait().expect("server status") {
            panic!("ordo serve exited by itself ({status}) before the test killed it");
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait for the killed server");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "ordo serve ended with {status}, not by the test's SIGKILL"
        );
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs the plan on `backend` and checks every invariant; panics with the seed on failure.
pub async fn run(backend: Backend, plan: Plan) -> Report {
    let database = TestDatabase::create(backend).await;
    let db = Db::connect(&database.url, 4).await.expect("connect");
    db.migrate().await.expect("migrate");
    let setup = Ordo::new(db.clone(), crate::helpers::test_policy(), Clock::system());
    let (staff, staff_token) = setup
        .create_user_with_token("staff", UserRole::Staff)
        .await
        .unwrap();
    let mut customers = Vec::new();
    for i in 0..4 {
        let (_, token) = setup
            .create_user_with_token(&format!("customer {i}"), UserRole::Customer)
            .await
            .unwrap();
        customers.push(token.expose().to_owned());
    }
    for i in 0..PRODUCTS {
        setup
            .create_product(
                staff.actor(),
                &ordo::domain::NewProduct {
                    sku: format!("W-{i}"),
                    name: format!("Workload product {i}"),
                    price_cents: 100 + i * 7,
                    currency: "EUR".into(),
                    stock: OPENING_STOCK,
                },
            )
            .await
            .unwrap();
    }

    // Every event goes to a receiver that checks its signature.
    let receiver = crate::receiver::Receiver::start().await;
    let (_, secret) = setup
        .create_endpoint(
            staff.actor(),
            &ordo::events::endpoints::NewEndpoint {
                url: receiver.url.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    receiver.trust(&secret);

    let port = free_port();
    let server = Arc::new(tokio::sync::Mutex::new(Server::start(&database.url, port)));
    server.lock().await.wait_ready().await;
    let base = format!("http://127.0.0.1:{port}");
    let shared = Arc::new(Mutex::new(Shared {
        orders: Vec::new(),
        sent_events: Vec::new(),
        report: Report::default(),
    }));
    let deadline = Instant::now() + Duration::from_secs(plan.seconds);
    let client = crate::helpers::client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let staff_token = staff_token.expose().to_owned();

    let mut tasks = Vec::new();
    for c in 0..plan.clients {
        let (client, base, shared) = (client.clone(), base.clone(), shared.clone());
        let (customers, staff_token) = (customers.clone(), staff_token.clone());
        let mut rng = StdRng::seed_from_u64(plan.seed ^ ((c as u64 + 1) * 0x9E37_79B9));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                one_operation(
                    &mut rng,
                    c,
                    n,
                    &client,
                    &base,
                    &shared,
                    &customers,
                    &staff_token,
                )
                .await;
            }
        }));
    }
    let killer = plan.crashes.then(|| {
        let server = server.clone();
        let shared = shared.clone();
        let mut rng = StdRng::seed_from_u64(plan.seed ^ 0xC0FFEE);
        tokio::spawn(async move {
            loop {
                let pause = Duration::from_millis(rng.random_range(300..1500));
                if Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
                let mut s = server.lock().await;
                let killed_at = Instant::now();
                s.crash();
                s.spawn();
                s.wait_ready().await;
                let mut shared = shared.lock().unwrap();
                shared.report.crashes += 1;
                shared
                    .report
                    .crash_windows
                    .push((killed_at, Instant::now()));
            }
        })
    });
    for t in tasks {
        t.await.expect("client task");
    }
    if let Some(k) = killer {
        k.await.expect("killer task");
    }
    // A last crash-free sweep settles what is due, then the server stops cleanly.
    {
        let mut s = server.lock().await;
        if plan.crashes {
            s.crash();
            s.spawn();
            s.wait_ready().await;
        }
        let (status, run) = call(
            &client,
            reqwest::Method::POST,
            &format!("{base}/api/v1/sweeps"),
            &staff_token,
            None,
        )
        .await;
        assert_eq!(
            status,
            Some(202),
            "a real sweep over HTTP answers 202 and runs on"
        );
        // It finishes, and every event reaches the receiver.
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, record) = call(
                &client,
                reqwest::Method::GET,
                &format!("{base}/api/v1/sweeps/{}", run["id"]),
                &staff_token,
                None,
            )
            .await;
            let undelivered: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'succeeded'",
            )
            .fetch_one(db.pool())
            .await
            .unwrap();
            if record["state"] == "finished" && undelivered == 0 {
                break;
            }
            assert!(
                Instant::now() < until,
                "seed {}: sweep {record} and {undelivered} deliveries still open",
                plan.seed
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let exit = s.terminate().expect("server was running");
        assert!(
            exit.success(),
            "ordo serve exited with {exit} after SIGTERM"
        );
    }
    let report = std::mem::take(&mut shared.lock().unwrap().report);
    check_crashes(&report, plan, deadline);
    check_invariants(&db, &report, plan).await;
    check_events_and_audit(&db, &report, plan, &receiver).await;
    db.close().await;
    drop(database);
    report
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (Option<u16>, Value) {
    call_as(client, method, url, token, body, None).await
}

async fn call_as(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
    request_id: Option<&str>,
) -> (Option<u16>, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let problem = r
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or("").contains("problem+json"));
            let value = r.json::<Value>().await.unwrap_or(Value::Null);
            if status >= 400 {
                assert!(problem, "{status} without problem+json: {value}");
            }
            (Some(status), value)
        }
        Err(_) => (None, Value::Null),
    }
}

#[allow(clippy::too_many_arguments)]
async fn one_operation(
    rng: &mut StdRng,
    c: usize,
    n: u64,
    client: &reqwest::Client,
    base: &str,
    shared: &Arc<Mutex<Shared>>,
    customers: &[String],
    staff: &str,
) {
    let started = Instant::now();
    let roll = rng.random_range(0..100);
    let request_id = format!("wl-{c}-{n}");
    let known = {
        let s = shared.lock().unwrap();
        (!s.orders.is_empty()).then(|| s.orders[rng.random_range(0..s.orders.len())].clone())
    };
    let post = reqwest::Method::POST;
    let (kind, status, body): (&'static str, Option<u16>, Value) = match (roll, known) {
        (0..30, _) | (_, None) => {
            let customer = rng.random_range(0..customers.len());
            let lines = rng.random_range(1..=3);
            let mut items = Vec::new();
            for _ in 0..lines {
                let quantity = if rng.random_range(0..10) == 0 {
                    80
                } else {
                    rng.random_range(1..=3)
                };
                items.push(
                    json!({"product_id": rng.random_range(1..=PRODUCTS), "quantity": quantity}),
                );
            }
            let (status, body) = call(
                client,
                post,
                &format!("{base}/api/v1/orders"),
                &customers[customer],
                Some(json!({"items": items, "note": "workload"})),
            )
            .await;
            if status == Some(201) {
                let mut s = shared.lock().unwrap();
                let id = body["order"]["id"].as_i64().unwrap();
                s.report.acknowledged_orders.insert(id);
                s.orders.push(KnownOrder {
                    id,
                    payment_id: body["payment"]["id"].as_i64().unwrap(),
                    amount: body["payment"]["amount_cents"].as_i64().unwrap(),
                    customer,
                });
            }
            ("place", status, body)
        }
        (30..50, Some(o)) | (50..55, Some(o)) => {
            let outcome = if roll < 50 { "succeeded" } else { "failed" };
            let event_id = format!("w-{c}-{n}");
            let body = json!({"event_id": event_id, "payment_id": o.payment_id, "status": outcome, "amount_cents": o.amount}).to_string();
            let (status, answer) = webhook(client, base, &body).await;
            let mut s = shared.lock().unwrap();
            s.sent_events.push(body);
            if let Some(outcome) = answer["outcome"].as_str() {
                s.report
                    .event_outcomes
                    .entry(event_id)
                    .or_default()
                    .push(outcome.to_owned());
            }
            (
                if roll < 50 { "pay" } else { "fail_payment" },
                status,
                answer,
            )
        }
        (55..60, Some(_)) => {
            let body = {
                let s = shared.lock().unwrap();
                if s.sent_events.is_empty() {
                    return;
                }
                s.sent_events[rng.random_range(0..s.sent_events.len())].clone()
            };
            let (status, answer) = webhook(client, base, &body).await;
            let event_id = serde_json::from_str::<Value>(&body).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned();
            if let Some(outcome) = answer["outcome"].as_str() {
                shared
                    .lock()
                    .unwrap()
                    .report
                    .event_outcomes
                    .entry(event_id)
                    .or_default()
                    .push(outcome.to_owned());
            }
            ("replay_webhook", status, answer)
        }
        (60..68, Some(o)) => {
            let by_staff = rng.random_bool(0.5);
            let token = if by_staff {
                staff
            } else {
                &customers[o.customer]
            };
            let (s, b) = call_as(
                client,
                post,
                &format!("{base}/api/v1/orders/{}/cancel", o.id),
                token,
                Some(json!({"reason": "workload"})),
                by_staff.then_some(request_id.as_str()),
            )
            .await;
            if by_staff {
                staff_action(shared, &request_id, "order.cancel", s);
            }
            ("cancel", s, b)
        }
        (68..76, Some(o)) => {
            let (s, b) = call_as(
                client,
                post,
                &format!("{base}/api/v1/orders/{}/ship", o.id),
                staff,
                Some(json!({"carrier": "DHL", "tracking_number": format!("T{n}")})),
                Some(&request_id),
            )
            .await;
            staff_action(shared, &request_id, "order.ship", s);
            ("ship", s, b)
        }
        (76..82, Some(o)) => {
            let (s, b) = call(
                client,
                post,
                &format!("{base}/api/v1/orders/{}/complete", o.id),
                &customers[o.customer],
                None,
            )
            .await;
            ("complete", s, b)
        }
        (82..87, Some(o)) => {
            let (s, b) = call(
                client,
                post,
                &format!("{base}/api/v1/orders/{}/refund", o.id),
                &customers[o.customer],
                None,
            )
            .await;
            ("request_refund", s, b)
        }
        (87..91, Some(o)) => {
            let (s, b) = call_as(
                client,
                post,
                &format!("{base}/api/v1/orders/{}/refund/approve", o.id),
                staff,
                None,
                Some(&request_id),
            )
            .await;
            staff_action(shared, &request_id, "order.refund_approve", s);
            ("approve_refund", s, b)
        }
        (91..94, Some(o)) => {
            let (s, b) = call_as(
                client,
                post,
                &format!("{base}/api/v1/orders/{}/refund/reject", o.id),
                staff,
                None,
                Some(&request_id),
            )
            .await;
            staff_action(shared, &request_id, "order.refund_reject", s);
            ("reject_refund", s, b)
        }
        (94..98, Some(_)) => {
            let delta = if rng.random_bool(0.5) {
                rng.random_range(1..=10)
            } else {
                -rng.random_range(1..=10)
            };
            let product = rng.random_range(1..=PRODUCTS);
            let (s, b) = call_as(
                client,
                post,
                &format!("{base}/api/v1/products/{product}/stock-adjustments"),
                staff,
                Some(json!({"delta": delta, "reason": "workload"})),
                Some(&request_id),
            )
            .await;
            staff_action(shared, &request_id, "stock.adjust", s);
            let mut sh = shared.lock().unwrap();
            match s {
                Some(200) => sh.report.acknowledged_adjustments += 1,
                None => sh.report.unacknowledged_adjustments += 1,
                _ => {}
            }
            ("adjust_stock", s, b)
        }
        (_, Some(_)) => {
            let (s, b) = call_as(
                client,
                post,
                &format!("{base}/api/v1/sweeps"),
                staff,
                Some(json!({"timeout_minutes": 0})),
                Some(&request_id),
            )
            .await;
            staff_action(shared, &request_id, "sweep.run", s);
            ("sweep", s, b)
        }
    };
    let mut s = shared.lock().unwrap();
    s.report.operations += 1;
    s.report
        .timeline
        .push((started, Instant::now(), kind, status));
    *s.report.by_kind.entry(kind).or_default() += 1;
    match status {
        Some(code) => {
            *s.report.statuses.entry(code).or_default() += 1;
            if code >= 500 {
                s.report
                    .server_errors
                    .push(format!("{kind}: {code} {body}"));
            }
        }
        None => s.report.connection_errors += 1,
    }
}

/// Notes a staff action: acknowledged (2xx) ones must have exactly one audit row, those
/// whose answer was lost at most one; refused ones none.
fn staff_action(
    shared: &Arc<Mutex<Shared>>,
    request_id: &str,
    action: &'static str,
    status: Option<u16>,
) {
    let mut s = shared.lock().unwrap();
    match status {
        Some(code) if (200..300).contains(&code) => {
            s.report.staff_actions.push((request_id.to_owned(), action))
        }
        None => s
            .report
            .unacknowledged_staff_actions
            .push((request_id.to_owned(), action)),
        Some(_) => s
            .report
            .unacknowledged_staff_actions
            .push((request_id.to_owned(), "refused")),
    }
}

/// Every committed change has exactly one event (`ordo check` holds that), every event
/// reached the receiver at least once with its signature verified and every duplicate
/// the same, and every acknowledged staff action has exactly one audit row.
async fn check_events_and_audit(
    db: &Db,
    report: &Report,
    plan: Plan,
    receiver: &crate::receiver::Receiver,
) {
    let seed = plan.seed;
    let pool = db.pool();
    let events: Vec<String> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut bodies: HashMap<String, String> = HashMap::new();
    for r in receiver.received() {
        assert_eq!(
            r.verified_by,
            [0],
            "seed {seed}: a signature did not verify"
        );
        let seen = bodies
            .entry(r.webhook_id.clone())
            .or_insert_with(|| r.raw.clone());
        assert_eq!(
            seen, &r.raw,
            "seed {seed}: {} came twice, differently",
            r.webhook_id
        );
    }
    let delivered: HashSet<String> = receiver
        .accepted()
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    let missing: Vec<_> = events.iter().filter(|e| !delivered.contains(*e)).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: events never delivered: {missing:?}"
    );

    let audited: Vec<(String, String)> =
        sqlx::query_as("SELECT request_id, action FROM audit_log WHERE request_id LIKE 'wl-%'")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut rows: HashMap<String, Vec<String>> = HashMap::new();
    for (request, action) in audited {
        rows.entry(request).or_default().push(action);
    }
    for (request, action) in &report.staff_actions {
        assert_eq!(
            rows.get(request).map(Vec::as_slice),
            Some(&[action.to_string()][..]),
            "seed {seed}: acknowledged {request} ({action})"
        );
    }
    for (request, _) in &report.unacknowledged_staff_actions {
        assert!(
            rows.get(request).is_none_or(|r| r.len() <= 1),
            "seed {seed}: {request}"
        );
    }
    let known: HashSet<&String> = report
        .staff_actions
        .iter()
        .chain(&report.unacknowledged_staff_actions)
        .map(|(r, _)| r)
        .collect();
    assert!(
        rows.keys().all(|r| known.contains(r)),
        "seed {seed}: audit rows for requests that were never made"
    );
}

async fn webhook(client: &reqwest::Client, base: &str, body: &str) -> (Option<u16>, Value) {
    let signature = sign_webhook(SECRET.as_bytes(), body.as_bytes());
    match client
        .post(format!("{base}/api/v1/payments/webhook"))
        .header("content-type", "application/json")
        .header("X-Ordo-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (Some(status), r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (None, Value::Null),
    }
}

/// Every failed connection is explained by a SIGKILL the test sent (it was in flight at the
/// kill, or sent before the restarted server was ready), none happens without crashes, and
/// after every restart the server acknowledged an order before the next kill.
fn check_crashes(report: &Report, plan: Plan, deadline: Instant) {
    let seed = plan.seed;
    let failed: Vec<&(Instant, Instant, &str, Option<u16>)> = report
        .timeline
        .iter()
        .filter(|(_, _, _, status)| status.is_none())
        .collect();
    assert_eq!(failed.len() as u64, report.connection_errors);
    if !plan.crashes {
        assert!(
            failed.is_empty(),
            "seed {seed}: {} requests found no server, which was never killed",
            failed.len()
        );
        return;
    }
    assert_eq!(report.crash_windows.len() as u64, report.crashes);
    for (sent, failed_at, _, _) in &failed {
        assert!(
            report
                .crash_windows
                .iter()
                .any(|(killed, ready)| sent <= ready && failed_at >= killed),
            "seed {seed}: a request sent {:?} into the run failed with no SIGKILL of ours \
             around it",
            sent.duration_since(report.timeline[0].0)
        );
    }
    for (i, (_, ready)) in report.crash_windows.iter().enumerate() {
        let next_kill = report
            .crash_windows
            .get(i + 1)
            .map_or(deadline, |(killed, _)| *killed);
        // The killer waits at least 300 ms after a restart; a last restart that came back
        // later than that before the clients' deadline had no time to serve them.
        if next_kill < *ready + Duration::from_millis(300) {
            assert_eq!(i + 1, report.crash_windows.len(), "seed {seed}");
            continue;
        }
        assert!(
            report
                .timeline
                .iter()
                .any(|(sent, answered, kind, status)| {
                    sent >= ready
                        && answered <= &next_kill
                        && *kind == "place"
                        && *status == Some(201)
                }),
            "seed {seed}: no order was acknowledged between restart {} and the next kill",
            i + 1
        );
    }
}

async fn check_invariants(db: &Db, report: &Report, plan: Plan) {
    let seed = plan.seed;
    let ordo = Ordo::new(db.clone(), crate::helpers::test_policy(), Clock::system());
    let check = ordo.check().await.unwrap();
    assert!(
        check.is_clean(),
        "seed {seed}: ordo check: {:#?}",
        check.findings
    );
    assert!(
        report.server_errors.is_empty(),
        "seed {seed}: 5xx answers: {:?}",
        report.server_errors
    );
    let pool = db.pool();

    // Nothing acknowledged was lost.
    let ids: HashSet<i64> = sqlx::query_scalar("SELECT id FROM orders")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let lost: Vec<_> = report.acknowledged_orders.difference(&ids).collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged orders lost: {lost:?}"
    );

    // Conservation: shelf + held or sold = opening + adjustments, per product.
    let rows = sqlx::query(
        "SELECT p.id, p.stock,
                CAST(COALESCE((SELECT SUM(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id
                      WHERE i.product_id = p.id
                        AND o.status IN ('pending', 'paid', 'shipped', 'refunding', 'completed')), 0) AS BIGINT) AS held,
                CAST(COALESCE((SELECT SUM(m.delta) FROM stock_movements m
                      WHERE m.product_id = p.id AND m.reason = 'adjust'), 0) AS BIGINT) AS adjusted
         FROM products p ORDER BY p.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for row in rows {
        let (id, stock, held, adjusted): (i64, i64, i64, i64) = (
            row.get("id"),
            row.get("stock"),
            row.get("held"),
            row.get("adjusted"),
        );
        assert_eq!(
            stock + held,
            adjusted,
            "seed {seed}: product {id}: stock {stock} + held {held} != opening + adjustments {adjusted}"
        );
    }
    let adjustments: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stock_movements WHERE reason = 'adjust' AND note = 'workload'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let acked = report.acknowledged_adjustments as i64;
    assert!(
        adjustments >= acked && adjustments <= acked + report.unacknowledged_adjustments as i64,
        "seed {seed}: {adjustments} adjustments recorded, {acked} acknowledged"
    );

    // Every history replays through the transition table to the order's status.
    let history = sqlx::query(
        "SELECT h.order_id, h.from_status, h.to_status, h.actor, o.status
         FROM order_status_history h JOIN orders o ON o.id = h.order_id ORDER BY h.order_id, h.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut current: HashMap<i64, (Option<OrderStatus>, String, bool, bool)> = HashMap::new();
    for row in history {
        let order: i64 = row.get("order_id");
        let from: Option<String> = row.get("from_status");
        let to: OrderStatus = row.get::<String, _>("to_status").parse().unwrap();
        let actor: String = row.get("actor");
        let entry = current
            .entry(order)
            .or_insert((None, row.get("status"), false, false));
        match (entry.0, from.as_deref()) {
            (None, None) => assert_eq!(
                to,
                OrderStatus::Pending,
                "seed {seed}: order {order} starts at {to}"
            ),
            (Some(prev), Some(f)) => {
                assert_eq!(
                    prev.as_str(),
                    f,
                    "seed {seed}: order {order}: history is not a chain"
                );
                assert!(
                    prev.can_move_to(to),
                    "seed {seed}: order {order}: {prev} -> {to} is not allowed"
                );
            }
            (prev, f) => panic!("seed {seed}: order {order}: history from {f:?} after {prev:?}"),
        }
        if to == OrderStatus::Paid {
            entry.2 = true;
        }
        if to == OrderStatus::Cancelled && actor == "system:expiry" {
            entry.3 = true;
        }
        entry.0 = Some(to);
    }
    for (order, (last, status, paid, swept)) in &current {
        assert_eq!(
            last.map(|s| s.as_str().to_owned()).as_deref(),
            Some(status.as_str()),
            "seed {seed}: order {order}"
        );
        assert!(
            !(*paid && *swept),
            "seed {seed}: order {order} was paid and cancelled by the sweep"
        );
    }
    assert_eq!(
        current.len(),
        ids.len(),
        "seed {seed}: every order has history"
    );

    // Every webhook event applied once: recorded once, and any later delivery was a replay.
    let recorded: HashSet<String> = sqlx::query_scalar("SELECT event_id FROM payment_events")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for (event, outcomes) in &report.event_outcomes {
        let applied = outcomes.iter().filter(|o| *o != "replayed").count();
        assert!(
            applied <= 1,
            "seed {seed}: event {event} applied {applied} times: {outcomes:?}"
        );
        if applied == 1 || outcomes.iter().any(|o| o == "replayed") {
            assert!(
                recorded.contains(event),
                "seed {seed}: event {event} answered but not recorded"
            );
        }
    }
}

fn summary(backend: Backend, plan: Plan, report: &Report) {
    let mut kinds: Vec<_> = report.by_kind.iter().collect();
    kinds.sort();
    let mut statuses: Vec<_> = report.statuses.iter().collect();
    statuses.sort();
    eprintln!(
        "workload {backend:?} seed {} {} s {} clients: {} operations, {} crashes, {} connection errors, {} orders acknowledged; by kind {:?}; statuses {:?}; 0 invariant violations",
        plan.seed,
        plan.seconds,
        plan.clients,
        report.operations,
        report.crashes,
        report.connection_errors,
        report.acknowledged_orders.len(),
        kinds,
        statuses
    );
}

crate::on_both_databases!(workload_holds_its_invariants, workload_survives_sigkill);

async fn workload_holds_its_invariants(backend: Backend) {
    let plan = Plan::from_env(false);
    let report = run(backend, plan).await;
    summary(backend, plan, &report);
    assert!(report.operations > 100, "the workload ran: {report:?}");
    assert!(
        report.by_kind.len() >= 10,
        "a real mix: {:?}",
        report.by_kind
    );
}

async fn workload_survives_sigkill(backend: Backend) {
    let plan = Plan::from_env(true);
    let report = run(backend, plan).await;
    summary(backend, plan, &report);
    assert!(report.crashes >= 1, "the server was killed: {report:?}");
}
