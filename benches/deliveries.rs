//! Delivery backlog: N undelivered events (an endpoint that was down, say) for one webhook
//! endpoint, drained by `ordo worker` (the real binary) into a local receiver that answers
//! 200. Reports how long the backlog took and its rate, and that every event arrived
//! (duplicates counted). The baseline, in the same run: the same number of signed POSTs of
//! the same body to the same kind of receiver, sent as the dispatcher sends them (four
//! loops of rounds of 256 at once) by a client with nothing else to do: no database, no
//! claim, no attempt rows. It is the floor of one HTTP request per event on this machine.
//!
//!     cargo bench --bench deliveries -- [--events 100000] [--backends postgres,sqlite]
//!
//! PostgreSQL: `ORDO_BENCH_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres).

mod common;

use common::{Backend, fresh_pg_database, scalar};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    events: i64,
    backends: Vec<Backend>,
}

fn parse_args() -> Args {
    let mut args = Args {
        events: 100_000,
        backends: vec![Backend::Postgres, Backend::Sqlite],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--events" => args.events = it.next().and_then(|s| s.parse().ok()).expect("--events N"),
            "--backends" => args.backends = common::backends(it.next()),
            _ => {}
        }
    }
    args
}

/// A receiver that answers 200 and notes each `webhook-id`.
async fn receiver() -> (String, Arc<Mutex<(u64, HashSet<String>)>>) {
    let seen = Arc::new(Mutex::new((0u64, HashSet::new())));
    let noted = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let noted = noted.clone();
            async move {
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    let mut seen = noted.lock().unwrap();
                    seen.0 += 1;
                    seen.1.insert(id.to_owned());
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}/hook"), seen)
}

/// The `data` of every backlog event: an order snapshot of the usual size.
const ENVELOPE_DATA: &str = r#"{"order":{"cancel_reason":null,"cancelled_at":null,"carrier":null,"completed_at":null,"created_at":"2026-11-28T17:12:27.636Z","currency":"EUR","id":1,"items":[{"product_id":2,"quantity":1,"unit_price_cents":100}],"note":null,"number":"ORD-BACKLOG","paid_at":null,"payments":[{"amount_cents":100,"created_at":"2026-11-28T17:12:27.636Z","expires_at":"2026-11-28T17:42:27.636Z","id":1,"method":"card","order_id":1,"provider_ref":null,"refund_ref":null,"refund_required":false,"status":"pending","updated_at":"2026-11-28T17:12:27.636Z"}],"status":"pending","total_cents":100,"tracking_number":null,"updated_at":"2026-11-28T17:12:27.636Z","user_id":1},"previous_status":null,"seq":1}"#;

/// The baseline: `n` signed POSTs of `body`, four loops of rounds of 256 at once, as the
/// dispatcher sends them; returns the time taken and how many were answered 200.
async fn http_alone(hook: &str, n: i64, body: &'static str) -> (Duration, i64) {
    const LOOPS: i64 = 4;
    const ROUND: i64 = 256;
    ordo::install_tls_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let key = ordo::events::signing::key_of(&ordo::events::signing::generate_secret()).unwrap();
    let next = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..LOOPS {
        let (client, key, next, hook) =
            (client.clone(), key.clone(), next.clone(), hook.to_owned());
        loops.spawn(async move {
            let mut ok = 0;
            loop {
                let first = next.fetch_add(ROUND, std::sync::atomic::Ordering::Relaxed);
                if first >= n {
                    return ok;
                }
                let mut round = tokio::task::JoinSet::new();
                for i in first..(first + ROUND).min(n) {
                    let (client, key, hook) = (client.clone(), key.clone(), hook.clone());
                    round.spawn(async move {
                        let id = format!("evt_baseline{i}");
                        let timestamp = chrono::Utc::now().timestamp();
                        let signature = ordo::events::signing::signature_header(
                            &[key],
                            &id,
                            timestamp,
                            body.as_bytes(),
                        );
                        let answer = client
                            .post(&hook)
                            .header("content-type", "application/json")
                            .header("webhook-id", &id)
                            .header("webhook-timestamp", timestamp.to_string())
                            .header("webhook-signature", signature)
                            .body(body)
                            .send()
                            .await;
                        match answer {
                            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                            _ => false,
                        }
                    });
                }
                while let Some(done) = round.join_next().await {
                    ok += i64::from(done.unwrap_or(false));
                }
            }
        });
    }
    let mut ok = 0;
    while let Some(n) = loops.join_next().await {
        ok += n.unwrap_or(0);
    }
    (started.elapsed(), ok)
}

/// The schema, one endpoint and `n` events with a pending delivery each; the events carry
/// an order snapshot of the usual size.
async fn prepare(backend: Backend, n: i64, hook: &str, dir: &std::path::Path) -> String {
    let url = match backend {
        Backend::Postgres => fresh_pg_database("ordo_bench_deliveries").await,
        Backend::Sqlite => format!("sqlite://{}", dir.join("deliveries.db").display()),
    };
    let db = ordo::Db::connect(&url, 1).await.expect("connect");
    db.migrate().await.expect("migrate");
    common::subscribe(&url, hook).await;
    let data = ENVELOPE_DATA;
    let (with, series) = match backend {
        Backend::Postgres => (String::new(), format!("generate_series(1, {n}) AS g(x)")),
        Backend::Sqlite => (
            format!(
                "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) "
            ),
            "g".to_owned(),
        ),
    };
    for sql in [
        format!(
            "{with}INSERT INTO events (event_id, type, order_id, product_id, seq, data, created_at)
             SELECT 'evt_backlog' || x, 'order.created', NULL, NULL, NULL, '{data}', 0 FROM {series}"
        ),
        "INSERT INTO webhook_deliveries (endpoint_id, event_pk, order_id, seq, status, attempts, next_attempt_at, created_at, updated_at)
         SELECT (SELECT MIN(id) FROM webhook_endpoints), id, NULL, NULL, 'pending', 0, 0, 0, 0 FROM events"
            .to_owned(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }
    sqlx::raw_sql(if backend == Backend::Postgres {
        "VACUUM ANALYZE"
    } else {
        "ANALYZE"
    })
    .execute(db.pool())
    .await
    .expect("analyze");
    db.close().await;
    url
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "| database | undelivered events | drained in (s) | events/s | arrived | duplicates | all succeeded |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for &backend in &args.backends {
        rt.block_on(async {
            let (hook, seen) = receiver().await;
            eprintln!("{backend:?}: writing {} undelivered events...", args.events);
            let url = prepare(backend, args.events, &hook, dir.path()).await;
            let started = Instant::now();
            let mut worker = Command::new(env!("CARGO_BIN_EXE_ordo"))
                .arg("worker")
                .env("ORDO_DATABASE_URL", &url)
                .env("ORDO_LOG", "warn")
                .env("ORDO_WEBHOOK_ALLOW_PRIVATE", "true")
                .stdout(Stdio::null())
                .spawn()
                .expect("start ordo worker");
            let until = started + Duration::from_secs(600);
            while (seen.lock().unwrap().1.len() as i64) < args.events && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let drained = started.elapsed();
            // Let the last round be recorded before stopping.
            let mut open = i64::MAX;
            while open > 0 && Instant::now() < until {
                open = scalar(
                    &url,
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'succeeded'",
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // SAFETY: sending SIGTERM to our own child.
            unsafe {
                libc::kill(worker.id() as libc::pid_t, libc::SIGTERM);
            }
            let status = worker.wait().expect("ordo worker exits");
            assert!(status.success(), "ordo worker exited with {status}");
            let (arrived, distinct) = {
                let seen = seen.lock().unwrap();
                (seen.0, seen.1.len() as u64)
            };
            println!(
                "| {backend:?} | {} | {:.1} | {:.0} | {distinct} | {} | {} |",
                args.events,
                drained.as_secs_f64(),
                args.events as f64 / drained.as_secs_f64(),
                arrived - distinct,
                if open == 0 { "yes" } else { "NO" },
            );
        });
    }
    rt.block_on(async {
        let (hook, seen) = receiver().await;
        let body: &'static str = Box::leak(
            format!(
                r#"{{"id":"evt_baseline","type":"order.created","timestamp":"2026-11-28T17:12:27.636Z","data":{ENVELOPE_DATA}}}"#
            )
            .into_boxed_str(),
        );
        let (took, ok) = http_alone(&hook, args.events, body).await;
        let distinct = seen.lock().unwrap().1.len() as i64;
        println!(
            "| HTTP alone (baseline) | {} | {:.1} | {:.0} | {distinct} | 0 | {} |",
            args.events,
            took.as_secs_f64(),
            args.events as f64 / took.as_secs_f64(),
            if ok == args.events { "yes" } else { "NO" },
        );
    });
    println!();
    println!(
        "`ordo worker` started with the backlog in place (start-up included); one endpoint; receiver on loopback answering 200; the baseline sends the same signed POSTs with no database"
    );
}
