//! ordo as an operator runs it: several `ordo serve` processes on one database, SIGTERM,
//! SIGKILL in the middle of a sweep, and `/metrics` read by Prometheus's own checker.

use crate::helpers::{Backend, MINUTE, TestShop};
use crate::on_both_databases;
use ordo::{Clock, Ordo};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

on_both_databases!(
    sigkill_mid_sweep_loses_nothing_and_releases_nothing_twice,
    a_sweep_started_over_http_answers_at_once_and_records_its_run,
);

fn ordo_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Waits for the child to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Places `n` one-item orders for `customer` from 8 tasks.
async fn place_orders(ordo: &Ordo, customer: i64, product: i64, n: usize) {
    let mut tasks = Vec::new();
    for t in 0..8 {
        let ordo = ordo.clone();
        tasks.push(tokio::spawn(async move {
            let order = ordo::domain::NewOrder {
                user_id: customer,
                items: vec![ordo::domain::OrderLine {
                    product_id: product,
                    quantity: 1,
                }],
                note: None,
                shipping_address: None,
            };
            for _ in (t..n).step_by(8) {
                ordo.place_order(ordo::domain::Actor::Customer(customer), &order)
                    .await
                    .expect("place order");
            }
        }));
    }
    for t in tasks {
        t.await.expect("placing orders");
    }
}

async fn count(shop: &TestShop, sql: &'static str) -> i64 {
    shop.count(sql).await
}

/// Every order cancelled exactly once: one cancel in its history, one release row per item.
async fn assert_cancelled_once(shop: &TestShop, n: i64) {
    assert_eq!(
        count(
            shop,
            "SELECT COUNT(*) FROM orders WHERE status = 'cancelled'"
        )
        .await,
        n
    );
    assert_eq!(
        count(
            shop,
            "SELECT COUNT(*) FROM order_status_history WHERE to_status = 'cancelled'"
        )
        .await,
        n
    );
    assert_eq!(
        count(
            shop,
            "SELECT COUNT(*) FROM stock_movements WHERE reason = 'release'"
        )
        .await,
        n
    );
    shop.assert_check_clean().await;
}

async fn sigkill_mid_sweep_loses_nothing_and_releases_nothing_twice(backend: Backend) {
    let shop = Arc::new(TestShop::new(backend).await);
    let n = 3000;
    let p = shop.product(n as i64, 100).await;
    place_orders(&shop.ordo, shop.customer.id, p.id, n).await;
    let now = ordo::domain::format_rfc3339(shop.ordo.clock.now() + 31 * MINUTE);
    let sweep = |batch: &str| {
        ordo_bin()
            .args(["cancel-unpaid-orders", "--batch-size", batch, "--now", &now])
            .env("ORDO_DATABASE_URL", &shop.database.url)
            .env("ORDO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sweep")
    };
    let mut child = sweep("5");
    // Kill it once it is well under way.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let done = count(
            &shop,
            "SELECT COUNT(*) FROM orders WHERE status = 'cancelled'",
        )
        .await;
        if done >= 200 || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    // A COMMIT the killed process had already sent may still land: let it, then read
    // both counts in one snapshot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cancelled, released): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM orders WHERE status = 'cancelled'),
                (SELECT COUNT(*) FROM stock_movements WHERE reason = 'release')",
    )
    .fetch_one(shop.ordo.db.pool())
    .await
    .unwrap();
    assert!(
        cancelled > 0 && cancelled < n as i64,
        "killed mid-run: {cancelled} of {n}"
    );
    // Whole batches or nothing: the invariants hold right after the kill.
    shop.assert_check_clean().await;
    assert_eq!(released, cancelled);

    let mut again = sweep("500");
    let status = wait_exit(&mut again, Duration::from_secs(120)).expect("sweep finishes");
    assert!(status.success());
    assert_cancelled_once(&shop, n as i64).await;
    assert_eq!(shop.stock(p.id).await, n as i64);
}

/// Two `ordo serve` processes with a one-second sweep on one PostgreSQL database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_the_sweep_and_stop_cleanly_on_postgres() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let shop = Arc::new(TestShop::new(Backend::Postgres).await);
    let n = 3000;
    let p = shop.product(n as i64 + 100, 100).await;
    // Orders placed an hour ago are overdue for the servers' clocks.
    let past = Ordo::new(
        shop.ordo.db.clone(),
        crate::helpers::test_policy(),
        Clock::fixed(chrono::Utc::now().timestamp_millis() - 60 * MINUTE),
    );
    place_orders(&past, shop.customer.id, p.id, n).await;

    let ports = [free_port(), free_port()];
    let mut servers: Vec<Child> = ports
        .iter()
        .map(|port| {
            ordo_bin()
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .env("ORDO_DATABASE_URL", &shop.database.url)
                .env("ORDO_SWEEP_INTERVAL_SECONDS", "1")
                .env("ORDO_SWEEP_BATCH_SIZE", "50")
                .env("ORDO_UNPAID_TIMEOUT_MINUTES", "0")
                .env("ORDO_PAYMENT_TTL_MINUTES", "0")
                .env("ORDO_LOG", "info")
                .env("ORDO_LOG_FORMAT", "json")
                .env("ORDO_MAX_PENDING_ORDERS_PER_CUSTOMER", "0")
                .env("ORDO_RATE_LIMIT_PER_SECOND", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start ordo serve")
        })
        .collect();
    let client = crate::helpers::client();
    for port in ports {
        let until = Instant::now() + Duration::from_secs(30);
        while client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < until,
                "server on {port} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // First the backlog goes.
    let all_swept = async |what: &str| {
        let until = Instant::now() + Duration::from_secs(90);
        while count(
            &shop,
            "SELECT COUNT(*) FROM orders WHERE status = 'pending'",
        )
        .await
            > 0
        {
            assert!(Instant::now() < until, "the servers did not sweep {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    all_swept("the backlog").await;
    // Then new orders through the API, due at once (timeout 0), are cancelled by the
    // servers' schedulers, after their deadline. (How soon is printed, not asserted: on a
    // loaded machine a tick may come late.)
    let mut placed = Vec::new();
    for i in 0..10 {
        let response = client
            .post(format!("http://127.0.0.1:{}/api/v1/orders", ports[i % 2]))
            .bearer_auth(&shop.customer_token)
            .json(&serde_json::json!({"items": [{"product_id": p.id, "quantity": 1}]}))
            .send()
            .await
            .expect("place order");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let body: serde_json::Value = response.json().await.unwrap();
        placed.push(body["order"]["id"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    all_swept("the new orders").await;
    let total = n as i64 + 10;
    let mut lags = Vec::new();
    for id in placed {
        let order = shop.ordo.order(shop.staff(), id).await.unwrap().order;
        assert_eq!(order.status, ordo::domain::OrderStatus::Cancelled);
        assert_eq!(order.cancel_reason.as_deref(), Some("payment timeout"));
        let lag = order.cancelled_at.unwrap() - order.created_at;
        assert!(lag >= 0, "order {id} cancelled before its deadline");
        let history = shop.history(id).await;
        assert_eq!(
            history.last().unwrap().actor,
            "system:expiry",
            "{history:?}"
        );
        lags.push(lag);
    }
    eprintln!("new orders cancelled this many ms after their deadline: {lags:?}");

    for server in &servers {
        signal(server, libc::SIGTERM);
    }
    let mut cancelled_by = Vec::new();
    for server in servers.iter_mut() {
        let status = wait_exit(server, Duration::from_secs(20)).expect("exits after SIGTERM");
        assert!(status.success(), "exit status {status}");
        let mut log = String::new();
        std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut log).unwrap();
        let cancelled: u64 = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "sweep finished")
            .map(|v| v["fields"]["cancelled"].as_u64().unwrap_or(0))
            .sum();
        assert!(log.contains("request"), "one log line per request");
        cancelled_by.push(cancelled);
    }
    eprintln!("cancelled by each server: {cancelled_by:?}");
    assert!(
        cancelled_by.iter().all(|c| *c > 0),
        "both servers swept: {cancelled_by:?}"
    );
    assert_eq!(
        cancelled_by.iter().sum::<u64>() as i64,
        total,
        "each order cancelled by one sweep"
    );
    assert_cancelled_once(&shop, total).await;
}

/// Restarts the PostgreSQL server under a running `ordo serve`: ordo reports not-ready while
/// it is down, recovers by itself, and loses no acknowledged order. Ignored by default (it
/// stops the server every other test uses); `.ci/run` runs it alone:
///     cargo test --test it -- --ignored postgres_restart
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared PostgreSQL server; run alone"]
async fn postgres_restart_is_survived() {
    // Run only when asked for by name: without PostgreSQL there is nothing to restart, and
    // passing would say otherwise.
    assert!(
        crate::helpers::postgres_url().is_some(),
        "postgres_restart_is_survived needs {}",
        crate::helpers::PG_ENV
    );
    let shop = TestShop::new(Backend::Postgres).await;
    let p = shop.product(1000, 100).await;
    let port = free_port();
    let mut server = ordo_bin()
        .args([
            "serve",
            "--no-scheduler",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("ORDO_DATABASE_URL", &shop.database.url)
        // One customer places every order here, retrying fast: the limits are not under test.
        .env("ORDO_MAX_PENDING_ORDERS_PER_CUSTOMER", "0")
        .env("ORDO_RATE_LIMIT_PER_SECOND", "0")
        .env("ORDO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ordo serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ready = |client: reqwest::Client, base: String| async move {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let until = Instant::now() + Duration::from_secs(30);
    while ready(client.clone(), base.clone()).await != 200 {
        assert!(Instant::now() < until, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut acknowledged = Vec::new();
    let place = async |client: &reqwest::Client, acknowledged: &mut Vec<i64>| -> u16 {
        match client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(&shop.customer_token)
            .json(&serde_json::json!({"items": [{"product_id": p.id, "quantity": 1}]}))
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                assert!(
                    status == 201 || status == 503,
                    "only 201 or 503, got {status}"
                );
                if status == 201 {
                    let body: serde_json::Value = r.json().await.unwrap();
                    acknowledged.push(body["order"]["id"].as_i64().unwrap());
                }
                status
            }
            Err(_) => 0,
        }
    };
    for _ in 0..20 {
        assert_eq!(place(&client, &mut acknowledged).await, 201);
    }

    let cluster = |action: &str| {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n 1) main {action}"
            ))
            .status()
            .expect("pg_ctlcluster");
        assert!(status.success(), "pg_ctlcluster {action}");
    };
    cluster("stop -m fast");
    let mut saw_not_ready = false;
    for _ in 0..50 {
        if ready(client.clone(), base.clone()).await == 503 {
            saw_not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // While it is down, placing an order is refused with 503, never half-done.
    let down = place(&client, &mut acknowledged).await;
    cluster("start");
    assert!(
        saw_not_ready,
        "/readyz said ready while PostgreSQL was down"
    );
    assert!(
        down == 503 || down == 0,
        "order placement while down answered {down}"
    );

    let until = Instant::now() + Duration::from_secs(60);
    while ready(client.clone(), base.clone()).await != 200 {
        assert!(Instant::now() < until, "ordo did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stale pooled connections fail once and are replaced; then orders go through again.
    let mut placed_after = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while placed_after < 20 {
        assert!(Instant::now() < until, "orders did not resume");
        if place(&client, &mut acknowledged).await == 201 {
            placed_after += 1;
        }
    }
    signal(&server, libc::SIGTERM);
    let status = wait_exit(&mut server, Duration::from_secs(20)).expect("exits");
    assert!(status.success());
    // The test's own pool lost its connections in the restart too: look with a fresh one.
    let fresh = Ordo::new(
        ordo::Db::connect(&shop.database.url, 2).await.unwrap(),
        crate::helpers::test_policy(),
        Clock::system(),
    );
    for id in &acknowledged {
        if let Err(e) = fresh.order(shop.staff(), *id).await {
            panic!("acknowledged order {id}: {e}");
        }
    }
    assert_eq!(
        fresh.product(p.id).await.unwrap().stock,
        1000 - acknowledged.len() as i64
    );
    let report = fresh.check().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    fresh.db.close().await;
}

/// Starts `ordo serve` on a free port for `shop`'s database; returns it with its base URL
/// once it answers.
pub(crate) async fn serve(shop: &TestShop, env: &[(&str, &str)]) -> (Child, String) {
    serve_on(shop, &free_port().to_string(), env).await
}

/// [`serve`] on a given port (to restart a server where its clients expect it).
pub(crate) async fn serve_on(shop: &TestShop, port: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut command = ordo_bin();
    command
        .args([
            "serve",
            "--no-scheduler",
            "--no-dispatch",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("ORDO_DATABASE_URL", &shop.database.url)
        .env("ORDO_LOG", "warn")
        .env("ORDO_RATE_LIMIT_PER_SECOND", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start ordo serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::client();
    for _ in 0..300 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ordo serve did not start");
}

async fn a_sweep_started_over_http_answers_at_once_and_records_its_run(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let n = 50_000;
    // Created a day ago: all due now.
    crate::seed::due_orders(
        &shop,
        backend,
        n,
        chrono::Utc::now().timestamp_millis() - 86_400_000,
    )
    .await;
    let client = crate::helpers::client();
    let start = |base: String| {
        let client = client.clone();
        let token = shop.staff_token.clone();
        async move {
            let started = Instant::now();
            let response = client
                .post(format!("{base}/api/v1/sweeps"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("POST /sweeps");
            let took = started.elapsed();
            assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            (took, format!("{base}{location}"))
        }
    };
    let run = |url: String| {
        let client = client.clone();
        let token = shop.staff_token.clone();
        async move {
            client
                .get(url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("GET run")
                .json::<serde_json::Value>()
                .await
                .expect("run json")
        }
    };

    // Small batches, so that the run is still going when SIGTERM comes.
    let (mut server, base) = serve(&shop, &[("ORDO_SWEEP_BATCH_SIZE", "50")]).await;
    let (took, location) = start(base).await;
    // At once: the 202 came before the run finished (how fast is the benchmarks' business).
    let record = run(location.clone()).await;
    assert_eq!(
        record["state"], "running",
        "after the 202 ({took:?}): {record}"
    );
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let record = run(location.clone()).await;
        if record["found"].as_i64().unwrap_or(0) > 0 || Instant::now() > until {
            assert_eq!(record["state"], "running", "{record}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&server, libc::SIGTERM);
    let exit = wait_exit(&mut server, Duration::from_secs(30)).expect("ordo serve stops");
    assert!(exit.success(), "{exit}");
    let id = location.rsplit('/').next().unwrap().parse::<i64>().unwrap();
    let stopped = shop.ordo.sweep_run(shop.staff(), id).await.unwrap();
    assert_eq!(stopped.state, "stopped", "{stopped:?}");
    assert_eq!(
        stopped.stopped_reason.as_deref(),
        Some("shutdown requested")
    );
    assert!(stopped.finished_at.is_some());
    let cancelled = shop
        .count("SELECT COUNT(*) FROM orders WHERE status = 'cancelled'")
        .await;
    assert!(cancelled > 0 && cancelled < n, "{cancelled}");
    assert_eq!(
        stopped.cancelled, cancelled,
        "the record tells what was done"
    );
    shop.assert_check_clean().await;

    // A new run finishes the rest, and its record ends with the true summary.
    let (mut server, base) = serve(&shop, &[]).await;
    let (took, location) = start(base).await;
    let record = run(location.clone()).await;
    assert_eq!(
        record["state"], "running",
        "after the 202 ({took:?}): {record}"
    );
    assert!(
        record["cancelled"].as_i64().unwrap() < n - cancelled,
        "after the 202: {record}"
    );
    let until = Instant::now() + Duration::from_secs(120);
    let record = loop {
        let record = run(location.clone()).await;
        if record["state"] != "running" || Instant::now() > until {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record["state"], "finished", "{record}");
    assert_eq!(record["trigger"], "api");
    assert_eq!(record["cancelled"], n - cancelled);
    assert_eq!(record["units_released"], n - cancelled);
    assert_eq!(record["errors"], 0);
    signal(&server, libc::SIGTERM);
    wait_exit(&mut server, Duration::from_secs(30)).expect("ordo serve stops");
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM orders WHERE status = 'pending'")
            .await,
        0
    );
    shop.assert_check_clean().await;
}
