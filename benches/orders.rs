//! Order placement over HTTP: a separate `ordo serve` process on PostgreSQL, driven by this
//! load process with 64 connections, (a) orders spread over 1,000 products, (b) every order
//! for one hot product. The baseline, in the same run: the same transaction's statements
//! driven straight at the database by pgbench at the same concurrency. Afterwards: nothing
//! oversold (stock + units reserved = the start) and `ordo check` clean.
//!
//!     cargo bench --bench orders -- [--seconds 10] [--connections 64]
//!
//! PostgreSQL: `ORDO_BENCH_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres).
//! Needs `pgbench` (Debian: postgresql-contrib or postgresql-client).

mod common;

use common::{fresh_pg_database, percentile, scalar};
use ordo::domain::UserRole;
use ordo::{Clock, Db, Ordo, Policy};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PRODUCTS: i64 = 1000;
const STOCK: i64 = 10_000_000;
const WARMUP: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Spread,
    Hot,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Spread => "spread over 1,000 products",
            Scenario::Hot => "one hot product",
        }
    }
}

struct Args {
    seconds: u64,
    connections: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 10,
        connections: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                args.seconds = it.next().and_then(|s| s.parse().ok()).expect("--seconds N")
            }
            "--connections" => {
                args.connections = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--connections N")
            }
            _ => {}
        }
    }
    args
}

/// A fresh database with the schema, 1,000 products (opening stock in the ledger) and
/// a customer; returns its URL and the customer's token.
async fn prepare(name: &str) -> (String, String) {
    let url = fresh_pg_database(name).await;
    let db = Db::connect(&url, 2).await.expect("connect");
    db.migrate().await.expect("migrate");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO products (sku, name, price_cents, currency, stock, sales_count, active, created_at, updated_at)
         SELECT 'LOAD-' || x, 'Load product', 100, 'EUR', {STOCK}, 0, TRUE, 0, 0 FROM generate_series(1, {PRODUCTS}) AS g(x);
         INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
         SELECT id, NULL, stock, 'adjust', 'bench', 'opening stock', 0 FROM products;"
    )))
    .execute(db.pool())
    .await
    .expect("seed");
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(db.pool())
        .await
        .expect("vacuum");
    let ordo = Ordo::new(db.clone(), Policy::default(), Clock::system());
    let (_, token) = ordo
        .create_user_with_token("load", UserRole::Customer)
        .await
        .expect("token");
    db.close().await;
    (url, token.expose().to_owned())
}

struct Run {
    orders: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.orders as f64 / self.seconds
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Drives `ordo serve` with `connections` concurrent clients for the warm-up and `seconds`.
async fn load(
    base: &str,
    token: &str,
    scenario: Scenario,
    connections: usize,
    seconds: u64,
) -> Run {
    ordo::install_tls_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .expect("client");
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let until = measure_from + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let client = client.clone();
        let url = format!("{base}/api/v1/orders");
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < until {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let product = match scenario {
                    Scenario::Spread => 1 + (seed % PRODUCTS as u64) as i64,
                    Scenario::Hot => 1,
                };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"items": [{"product_id": product, "quantity": 1}]}))
                    .send()
                    .await;
                let ok = match response {
                    Ok(r) => {
                        let created = r.status() == reqwest::StatusCode::CREATED;
                        let _ = r.bytes().await;
                        created
                    }
                    Err(_) => false,
                };
                if sent >= measure_from && Instant::now() <= until {
                    if ok {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("client task");
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_by(f64::total_cmp);
    Run {
        orders: latencies.len(),
        errors,
        seconds: seconds as f64,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
    }
}

async fn bench_ordo(scenario: Scenario, args: &Args) -> (Run, bool, bool) {
    let (url, token) = prepare("ordo_bench_orders").await;
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args([
            "serve",
            "--no-scheduler",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("ORDO_DATABASE_URL", &url)
        .env("ORDO_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start ordo serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = {
        ordo::install_tls_provider();
        reqwest::Client::new()
    };
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = load(&base, &token, scenario, args.connections, args.seconds).await;
    // SAFETY: sending SIGTERM to our own child.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = server.wait().expect("ordo serve exits");
    assert!(status.success(), "ordo serve exited with {status}");

    // Nothing oversold: what is on the shelf plus what orders hold is what there was.
    let held = scalar(
        &url,
        "SELECT CAST((SELECT SUM(stock) FROM products) + (SELECT COALESCE(SUM(quantity), 0) FROM order_items) AS BIGINT)",
    )
    .await;
    let conserved = held == PRODUCTS * STOCK;
    let check = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["--database-url", &url, "check"])
        .env("ORDO_LOG", "warn")
        .output()
        .expect("ordo check");
    (run, conserved, check.status.success())
}

const PGBENCH_SCRIPT: &str = r#"
\set pid random(1, :products)
BEGIN;
UPDATE products SET stock = stock - 1, updated_at = 1 WHERE id = :pid AND active AND stock >= 1 RETURNING price_cents, currency;
INSERT INTO orders (number, user_id, status, total_cents, currency, note, created_at, updated_at) VALUES (md5(random()::text || clock_timestamp()::text), 1, 'pending', 100, 'EUR', NULL, 1, 1) RETURNING id AS order_id \gset
INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (:order_id, :pid, 1, 100);
INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at) VALUES (:pid, :order_id, -1, 'reserve', 'user:1', NULL, 1);
INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at) VALUES (:order_id, NULL, 'pending', 'user:1', NULL, 1);
INSERT INTO payments (order_id, amount_cents, method, status, expires_at, refund_required, created_at, updated_at) VALUES (:order_id, 100, 'card', 'pending', 2, FALSE, 1, 1);
COMMIT;
"#;

async fn bench_pgbench(scenario: Scenario, args: &Args) -> Run {
    let (url, _) = prepare("ordo_bench_pgbench").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("place_order.sql");
    std::fs::write(&script, PGBENCH_SCRIPT).expect("script");
    let products = match scenario {
        Scenario::Spread => PRODUCTS,
        Scenario::Hot => 1,
    };
    let total = WARMUP.as_secs() + args.seconds;
    let out = Command::new("pgbench")
        .current_dir(dir.path())
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &args.connections.to_string(),
            "-j",
            "2",
            "-T",
            &total.to_string(),
            "-D",
            &format!("products={products}"),
            "-l",
            "-f",
        ])
        .arg(&script)
        .arg(&url)
        .output()
        .expect("run pgbench (Debian: postgresql-contrib)");
    assert!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Per-transaction logs: client, transaction, latency (us), script, epoch s, us.
    let mut samples: Vec<(f64, f64)> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("logs").flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbench_log")
        {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 6 {
                let latency_ms = f[2].parse::<f64>().unwrap_or(0.0) / 1000.0;
                let at =
                    f[4].parse::<f64>().unwrap_or(0.0) + f[5].parse::<f64>().unwrap_or(0.0) / 1e6;
                samples.push((at, latency_ms));
            }
        }
    }
    let first = samples.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
    let from = first + WARMUP.as_secs_f64();
    let to = from + args.seconds as f64;
    let mut latencies: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at >= from && *at <= to)
        .map(|s| s.1)
        .collect();
    latencies.sort_by(f64::total_cmp);
    Run {
        orders: latencies.len(),
        errors: 0,
        seconds: args.seconds as f64,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    for scenario in [Scenario::Spread, Scenario::Hot] {
        eprintln!("{}: ordo over HTTP...", scenario.name());
        let (ordo, conserved, check) = rt.block_on(bench_ordo(scenario, &args));
        eprintln!("{}: pgbench...", scenario.name());
        let baseline = rt.block_on(bench_pgbench(scenario, &args));
        eprintln!(
            "{}: ordo {:.0}/s p99 {:.1} ms; pgbench {:.0}/s p99 {:.1} ms",
            scenario.name(),
            ordo.rate(),
            ordo.p99_ms,
            baseline.rate(),
            baseline.p99_ms
        );
        rows.push((scenario, ordo, baseline, conserved, check));
    }
    println!(
        "| scenario | ordo orders/s | ordo p50 (ms) | ordo p99 (ms) | errors | pgbench orders/s | pgbench p50 (ms) | pgbench p99 (ms) | ordo / pgbench | stock conserved | ordo check |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for (scenario, o, b, conserved, check) in &rows {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {} | {} |",
            scenario.name(),
            o.rate(),
            o.p50_ms,
            o.p99_ms,
            o.errors,
            b.rate(),
            b.p50_ms,
            b.p99_ms,
            o.rate() / b.rate(),
            if *conserved { "yes" } else { "NO" },
            if *check { "clean" } else { "FINDINGS" },
        );
    }
    println!(
        "\n{} connections, {} s measured after {} s warm-up; PostgreSQL; one item per order",
        args.connections,
        args.seconds,
        WARMUP.as_secs()
    );
}
