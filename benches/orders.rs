//! Order placement over HTTP: a separate `ordo serve` process (release build), driven by
//! this load process with N concurrent keep-alive connections, (a) orders spread over
//! 1,000 products, (b) every order for one hot product (a flash sale). Each request is
//! one customer's order, round robin over 20,000 customers, so the per-customer limits and
//! the per-token rate limiter run at their defaults. The baseline, in the same run: the
//! same transaction's statements driven straight at PostgreSQL by pgbench, one order per
//! transaction, at the same concurrency. Variants: the rate limiter off; one webhook
//! endpoint subscribed with a local receiver (its delivery lag measured); WeChat Pay as the
//! default payment provider (placement never waits on it). Afterwards:
//! nothing oversold (stock + units reserved = the start) and `ordo check` clean.
//!
//!     cargo bench --bench orders -- [--seconds 10] [--connections 64,256]
//!         [--backends postgres,sqlite] [--only spread|hot] [--skip-variants]
//!         [--variant limiter-off|endpoint|wechatpay] [--no-baseline] [--rate ORDERS_PER_S]
//!
//! PostgreSQL: `ORDO_BENCH_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres).
//! Needs `pgbench` (Debian: postgresql-contrib or postgresql-client).

mod common;
#[path = "../tests/doubles/mod.rs"]
mod doubles;

use common::{Backend, fresh_pg_database, percentile, scalar};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRODUCTS: i64 = 1000;
const STOCK: i64 = 10_000_000;
const CUSTOMERS: i64 = 20_000;
const PAST_ORDERS: i64 = 100_000;
/// Orders placed in the last minutes and not yet paid, one each for the first customers: a
/// shop always has some, and without them the planner's statistics say no order is pending.
const OPEN_ORDERS: i64 = 2_000;
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// Defaults: rate limiter on, limits on, events written, no endpoint.
    Default,
    LimiterOff,
    /// One endpoint subscribed to every event, a local receiver answering 200.
    Endpoint,
    /// `default_payment_provider = wechatpay`: each order's first payment is a WeChat Pay
    /// one (opened at WeChat Pay only when the customer asks for it, never while placing).
    Wechatpay,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Default => "defaults",
            Variant::LimiterOff => "rate limiter off",
            Variant::Endpoint => "1 webhook endpoint",
            Variant::Wechatpay => "default provider wechatpay",
        }
    }
}

struct Args {
    seconds: u64,
    connections: Vec<usize>,
    backends: Vec<Backend>,
    scenarios: Vec<Scenario>,
    variants: bool,
    /// Only these variants (the defaults are always run).
    only_variant: Option<Variant>,
    /// Only drive this running server (already prepared by an earlier run), to profile it.
    target: Option<String>,
    /// Skip the pgbench baseline.
    baseline: bool,
    /// Orders per second in all, instead of as many as are answered.
    rate: Option<f64>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 10,
        connections: vec![64, 256],
        backends: vec![Backend::Postgres, Backend::Sqlite],
        scenarios: vec![Scenario::Spread, Scenario::Hot],
        variants: true,
        only_variant: None,
        target: None,
        baseline: true,
        rate: None,
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
                    .map(|s| s.split(',').map(|n| n.parse().expect("N")).collect())
                    .expect("--connections N[,N]")
            }
            "--backends" => args.backends = common::backends(it.next()),
            "--only" => {
                args.scenarios = match it.next().as_deref() {
                    Some("spread") => vec![Scenario::Spread],
                    Some("hot") => vec![Scenario::Hot],
                    other => panic!("--only spread|hot, not {other:?}"),
                }
            }
            "--skip-variants" => args.variants = false,
            "--variant" => {
                args.only_variant = match it.next().as_deref() {
                    Some("limiter-off") => Some(Variant::LimiterOff),
                    Some("endpoint") => Some(Variant::Endpoint),
                    Some("wechatpay") => Some(Variant::Wechatpay),
                    other => panic!("--variant limiter-off|endpoint|wechatpay, not {other:?}"),
                }
            }
            "--target" => args.target = it.next(),
            "--no-baseline" => args.baseline = false,
            "--rate" => args.rate = Some(it.next().and_then(|s| s.parse().ok()).expect("--rate N")),
            _ => {}
        }
    }
    args
}

/// The schema, 1,000 products (opening stock in the ledger), a staff user, 20,000
/// customers with tokens `bench-c-<i>` (stored hashed, as ordo stores them), and 100,000
/// past orders (cancelled, with their items, ledger, history and payments) and 2,000 open
/// ones, so that the tables and the planner's statistics look like a shop that has been open
/// a while.
async fn prepare(backend: Backend, name: &str, dir: &std::path::Path) -> String {
    let url = match backend {
        Backend::Postgres => fresh_pg_database(name).await,
        Backend::Sqlite => {
            // Each scenario starts from a new file, as each PostgreSQL run gets a new database.
            let path = dir.join(format!("{name}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            format!("sqlite://{}", path.display())
        }
    };
    let db = ordo::Db::connect(&url, 2).await.expect("connect");
    db.migrate().await.expect("migrate");
    let (series, yes) = match backend {
        Backend::Postgres => ("generate_series(1, {n}) AS g(x)", "TRUE"),
        Backend::Sqlite => ("g", "1"),
    };
    let with = |n: i64| match backend {
        Backend::Postgres => String::new(),
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) "
        ),
    };
    let from = |n: i64| series.replace("{n}", &n.to_string());
    let statements = [
        format!(
            "{}INSERT INTO products (sku, name, price_cents, currency, stock, sales_count, active, created_at, updated_at)
             SELECT 'LOAD-' || x, 'Load product', 100, 'CNY', {STOCK}, 0, {yes}, 0, 0 FROM {}",
            with(PRODUCTS),
            from(PRODUCTS)
        ),
        "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
         SELECT id, NULL, stock, 'adjust', 'bench', 'opening stock', 0 FROM products"
            .to_owned(),
        "INSERT INTO users (id, name, role, created_at) VALUES (1, 'bench staff', 'staff', 0)".to_owned(),
        format!(
            "{}INSERT INTO users (id, name, role, created_at) SELECT x + 1, 'customer ' || x, 'customer', 0 FROM {}",
            with(CUSTOMERS),
            from(CUSTOMERS)
        ),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }
    let (no, past) = (
        if backend == Backend::Postgres {
            "FALSE"
        } else {
            "0"
        },
        PAST_ORDERS,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let history = [
        format!(
            "{}INSERT INTO orders (id, number, user_id, status, total_cents, currency, created_at, updated_at, cancelled_at, cancel_reason)
             SELECT x, 'ORD-PAST-' || x, 2 + x % {CUSTOMERS}, 'cancelled', 100, 'CNY', x, x, x, 'past' FROM {}",
            with(past),
            from(past)
        ),
        format!(
            "{}INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) SELECT x, 1 + x % {PRODUCTS}, 1, 100 FROM {}",
            with(past),
            from(past)
        ),
        "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
         SELECT product_id, order_id, -1, 'reserve', 'bench', NULL, order_id FROM order_items".to_owned(),
        "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
         SELECT product_id, order_id, 1, 'release', 'bench', NULL, order_id FROM order_items".to_owned(),
        "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
         SELECT id, NULL, 'pending', 'bench', NULL, id FROM orders".to_owned(),
        "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
         SELECT id, 'pending', 'cancelled', 'bench', NULL, id FROM orders".to_owned(),
        format!(
            "INSERT INTO payments (order_id, amount_cents, method, status, expires_at, refund_required, created_at, updated_at)
             SELECT id, 100, 'card', 'cancelled', id, {no}, id, id FROM orders"
        ),
        // The open tail: pending, reserved, a payment open for another half hour.
        format!(
            "{}INSERT INTO orders (id, number, user_id, status, total_cents, currency, created_at, updated_at)
             SELECT {past} + x, 'ORD-OPEN-' || x, 2 + x % {CUSTOMERS}, 'pending', 100, 'CNY', {now}, {now} FROM {}",
            with(OPEN_ORDERS),
            from(OPEN_ORDERS)
        ),
        format!(
            "{}INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) SELECT {past} + x, 1 + x % {PRODUCTS}, 1, 100 FROM {}",
            with(OPEN_ORDERS),
            from(OPEN_ORDERS)
        ),
        format!(
            "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
             SELECT product_id, order_id, -1, 'reserve', 'bench', NULL, {now} FROM order_items WHERE order_id > {past}"
        ),
        format!(
            "UPDATE products SET stock = stock - (SELECT COUNT(*) FROM order_items i
               WHERE i.order_id > {past} AND i.product_id = products.id)"
        ),
        format!(
            "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
             SELECT id, NULL, 'pending', 'bench', NULL, {now} FROM orders WHERE id > {past}"
        ),
        format!(
            "INSERT INTO payments (order_id, amount_cents, method, status, expires_at, refund_required, created_at, updated_at)
             SELECT id, 100, 'card', 'pending', {now} + 1800000, {no}, {now}, {now} FROM orders WHERE id > {past}"
        ),
    ];
    for sql in history {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }
    let tokens: Vec<serde_json::Value> = (0..=CUSTOMERS)
        .map(|i| {
            serde_json::json!({"user_id": i + 1, "name": format!("bench {i}"),
                "hash": ordo::auth::token_hash(&token(i))})
        })
        .collect();
    let rows = match backend {
        Backend::Postgres => {
            "json_to_recordset($1::json) AS r(user_id bigint, name text, hash text)".to_owned()
        }
        Backend::Sqlite => "(SELECT json_extract(value, '$.user_id') AS user_id, json_extract(value, '$.name') AS name, json_extract(value, '$.hash') AS hash FROM json_each($1)) AS r".to_owned(),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at) SELECT r.user_id, r.name, r.hash, 0 FROM {rows}"
    )))
    .bind(serde_json::to_string(&tokens).unwrap())
    .execute(db.pool())
    .await
    .expect("tokens");
    if backend == Backend::Postgres {
        for table in ["users", "orders", "payments"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            )))
            .execute(db.pool())
            .await
            .expect("setval");
        }
        sqlx::raw_sql("VACUUM ANALYZE")
            .execute(db.pool())
            .await
            .expect("vacuum");
    } else {
        sqlx::raw_sql("ANALYZE")
            .execute(db.pool())
            .await
            .expect("analyze");
    }
    db.close().await;
    url
}

/// Token 0 is the staff user's; 1.. are the customers'.
fn token(i: i64) -> String {
    format!("bench-c-{i}")
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

/// Drives `ordo serve` with `connections` concurrent clients for the warm-up and `seconds`:
/// each as fast as it is answered, or, with `rate`, at a fixed arrival rate in all (each
/// latency then counts from when the order was due to be sent, so a server that falls
/// behind is not flattered by clients that wait for it).
async fn load(
    base: &str,
    scenario: Scenario,
    connections: usize,
    seconds: u64,
    rate: Option<f64>,
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
        tasks.push(tokio::spawn(async move {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut k = 0i64;
            while Instant::now() < until {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let product = match scenario {
                    Scenario::Spread => 1 + (seed % PRODUCTS as u64) as i64,
                    Scenario::Hot => 1,
                };
                let customer = 1 + (c as i64 + k * connections as i64) % CUSTOMERS;
                let sent = match rate {
                    Some(rate) => {
                        let every = connections as f64 / rate;
                        let due = start
                            + Duration::from_secs_f64(
                                every * (k as f64 + c as f64 / connections as f64),
                            );
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                k += 1;
                let response = client
                    .post(&url)
                    .bearer_auth(token(customer))
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

/// A webhook receiver that answers 200 and notes each event's lag (its arrival minus its
/// `timestamp`).
async fn receiver() -> (String, Arc<Mutex<Vec<f64>>>) {
    let lags = Arc::new(Mutex::new(Vec::new()));
    let seen = lags.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body)
                    && let Some(at) = event["timestamp"].as_str()
                    && let Ok(at) = ordo::domain::parse_rfc3339(at)
                {
                    let lag = chrono::Utc::now().timestamp_millis() - at;
                    seen.lock().unwrap().push(lag as f64);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}/hook"), lags)
}

struct Outcome {
    run: Run,
    conserved: bool,
    check: bool,
    /// p50, p99 delivery lag (ms) and whether every event arrived, with an endpoint.
    lag: Option<(f64, f64, bool)>,
}

async fn bench_ordo(
    backend: Backend,
    scenario: Scenario,
    variant: Variant,
    connections: usize,
    args: &Args,
    dir: &std::path::Path,
) -> Outcome {
    let url = prepare(backend, "ordo_bench_orders", dir).await;
    let mut lags = None;
    if variant == Variant::Endpoint {
        let (hook, seen) = receiver().await;
        common::subscribe(&url, &hook).await;
        lags = Some(seen);
    }
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
    command
        .args([
            "serve",
            "--no-scheduler",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("ORDO_DATABASE_URL", &url)
        .env(
            "ORDO_LOG",
            std::env::var("ORDO_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("ORDO_LOG_FORMAT", "json")
        .env("ORDO_WEBHOOK_ALLOW_PRIVATE", "true")
        .stdout(Stdio::null());
    if variant == Variant::LimiterOff {
        command.env("ORDO_RATE_LIMIT_PER_SECOND", "0");
    }
    // Kept alive while the server runs; nothing is asked of it while placing.
    let _double = if variant == Variant::Wechatpay {
        let double = doubles::wechatpay::WechatPayDouble::start(ordo::Clock::system()).await;
        for (key, value) in double.settings(dir) {
            command.env(format!("ORDO_{}", key.to_ascii_uppercase()), value);
        }
        command
            .env("ORDO_DEFAULT_PAYMENT_PROVIDER", "wechatpay")
            .env("ORDO_PUBLIC_URL", "http://127.0.0.1:9");
        Some(double)
    } else {
        None
    };
    if let Ok(extra) = std::env::var("ORDO_BENCH_SERVE_ARGS") {
        command.args(extra.split_whitespace());
    }
    let mut server = command.spawn().expect("start ordo serve");
    let base = format!("http://127.0.0.1:{port}");
    ordo::install_tls_provider();
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = load(&base, scenario, connections, args.seconds, args.rate).await;
    let lag = match &lags {
        None => None,
        Some(seen) => {
            // Let the dispatcher finish, then see that every event arrived.
            let events = scalar(&url, "SELECT COUNT(*) FROM events").await;
            let until = Instant::now() + Duration::from_secs(60);
            while (seen.lock().unwrap().len() as i64) < events && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut lags = seen.lock().unwrap().clone();
            lags.sort_by(f64::total_cmp);
            Some((
                percentile(&lags, 50.0),
                percentile(&lags, 99.0),
                lags.len() as i64 >= events,
            ))
        }
    };
    // SAFETY: sending SIGTERM to our own child.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = server.wait().expect("ordo serve exits");
    assert!(status.success(), "ordo serve exited with {status}");

    // Nothing oversold: what is on the shelf plus what orders hold is what there was.
    let held = scalar(
        &url,
        "SELECT CAST((SELECT SUM(stock) FROM products) + (SELECT COALESCE(SUM(i.quantity), 0)
           FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status <> 'cancelled') AS BIGINT)",
    )
    .await;
    let check = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["--database-url", &url, "check"])
        .env("ORDO_LOG", "warn")
        .output()
        .expect("ordo check");
    Outcome {
        run,
        conserved: held == PRODUCTS * STOCK,
        check: check.status.success(),
        lag,
    }
}

const PGBENCH_SCRIPT: &str = r#"
\set pid random(1, :products)
BEGIN;
UPDATE products SET stock = stock - 1, updated_at = 1 WHERE id = :pid AND active AND stock >= 1 RETURNING price_cents, currency;
INSERT INTO orders (number, user_id, status, total_cents, currency, note, created_at, updated_at) VALUES (md5(random()::text || clock_timestamp()::text), 2, 'pending', 100, 'CNY', NULL, 1, 1) RETURNING id AS order_id \gset
INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (:order_id, :pid, 1, 100);
INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at) VALUES (:pid, :order_id, -1, 'reserve', 'user:2', NULL, 1);
INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at) VALUES (:order_id, NULL, 'pending', 'user:2', NULL, 1);
INSERT INTO payments (order_id, amount_cents, method, status, expires_at, refund_required, created_at, updated_at) VALUES (:order_id, 100, 'card', 'pending', 2, FALSE, 1, 1);
COMMIT;
"#;

async fn bench_pgbench(
    scenario: Scenario,
    connections: usize,
    args: &Args,
    dir: &std::path::Path,
) -> (Run, usize) {
    let url = prepare(Backend::Postgres, "ordo_bench_pgbench", dir).await;
    let work = tempfile::tempdir().expect("temp dir");
    let script = work.path().join("place_order.sql");
    std::fs::write(&script, PGBENCH_SCRIPT).expect("script");
    let products = match scenario {
        Scenario::Spread => PRODUCTS,
        Scenario::Hot => 1,
    };
    let total = WARMUP.as_secs() + args.seconds;
    // pgbench holds a server connection per client: no more than the server allows.
    let room = scalar(
        &url,
        "SELECT CAST(current_setting('max_connections') AS BIGINT)
                - CAST(current_setting('superuser_reserved_connections') AS BIGINT) - 5",
    )
    .await;
    let clients = connections.min(room.max(1) as usize);
    let mut command = Command::new("pgbench");
    if let Some(rate) = args.rate {
        command.args(["-R", &format!("{rate}")]);
    }
    let out = command
        .current_dir(work.path())
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
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
    for entry in std::fs::read_dir(work.path()).expect("logs").flatten() {
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
    (
        Run {
            orders: latencies.len(),
            errors: 0,
            seconds: args.seconds as f64,
            p50_ms: percentile(&latencies, 50.0),
            p99_ms: percentile(&latencies, 99.0),
        },
        clients,
    )
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(base) = &args.target {
        for &scenario in &args.scenarios {
            let run = rt.block_on(load(
                base,
                scenario,
                args.connections[0],
                args.seconds,
                args.rate,
            ));
            println!(
                "{}: {:.0} orders/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
                scenario.name(),
                run.rate(),
                run.p50_ms,
                run.p99_ms,
                run.errors
            );
        }
        return;
    }
    println!(
        "| database | connections | scenario | variant | ordo orders/s | p50 (ms) | p99 (ms) | errors | pgbench orders/s | pgbench p99 (ms) | ordo / pgbench | delivery lag p50 / p99 (ms) | stock conserved | ordo check |"
    );
    println!(
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"
    );
    // Correctness findings: the table is printed whole, then the run fails on any.
    let mut findings = Vec::new();
    for &backend in &args.backends {
        let connections: Vec<usize> = match backend {
            Backend::Postgres => args.connections.clone(),
            Backend::Sqlite => vec![args.connections[0]],
        };
        for &connections in &connections {
            for &scenario in &args.scenarios {
                let baseline = (backend == Backend::Postgres && args.baseline).then(|| {
                    eprintln!("{backend:?} {connections} {}: pgbench...", scenario.name());
                    rt.block_on(bench_pgbench(scenario, connections, &args, dir.path()))
                });
                let mut variants = vec![Variant::Default];
                if args.variants
                    && backend == Backend::Postgres
                    && scenario == Scenario::Spread
                    && connections == args.connections[0]
                {
                    match args.only_variant {
                        Some(only) => variants.push(only),
                        None => variants.extend([
                            Variant::LimiterOff,
                            Variant::Endpoint,
                            Variant::Wechatpay,
                        ]),
                    }
                }
                for variant in variants {
                    eprintln!(
                        "{backend:?} {connections} {} {}: ordo...",
                        scenario.name(),
                        variant.name()
                    );
                    let o = rt.block_on(bench_ordo(
                        backend,
                        scenario,
                        variant,
                        connections,
                        &args,
                        dir.path(),
                    ));
                    let (pg_rate, pg_p99, ratio) = match &baseline {
                        Some((b, clients)) => (
                            if *clients < connections {
                                format!("{:.0} ({clients} clients: the server's limit)", b.rate())
                            } else {
                                format!("{:.0}", b.rate())
                            },
                            format!("{:.1}", b.p99_ms),
                            format!("{:.2}", o.run.rate() / b.rate()),
                        ),
                        None => ("-".into(), "-".into(), "-".into()),
                    };
                    let lag = o.lag.map_or("-".to_owned(), |(p50, p99, all)| {
                        format!(
                            "{p50:.0} / {p99:.0}{}",
                            if all { "" } else { " (NOT ALL DELIVERED)" }
                        )
                    });
                    let run = format!(
                        "{backend:?}, {connections} connections, {}, {}",
                        scenario.name(),
                        variant.name()
                    );
                    if !o.conserved {
                        findings.push(format!("{run}: stock not conserved"));
                    }
                    if !o.check {
                        findings.push(format!("{run}: ordo check reported findings"));
                    }
                    if o.lag.is_some_and(|(_, _, all)| !all) {
                        findings.push(format!("{run}: not every event was delivered"));
                    }
                    println!(
                        "| {backend:?} | {connections} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {pg_rate} | {pg_p99} | {ratio} | {lag} | {} | {} |",
                        scenario.name(),
                        variant.name(),
                        o.run.rate(),
                        o.run.p50_ms,
                        o.run.p99_ms,
                        o.run.errors,
                        if o.conserved { "yes" } else { "NO" },
                        if o.check { "clean" } else { "FINDINGS" },
                    );
                }
            }
        }
    }
    println!(
        "\n{} s measured after {} s warm-up; one item per order; {CUSTOMERS} customers round robin",
        args.seconds,
        WARMUP.as_secs()
    );
    if !findings.is_empty() {
        eprintln!("correctness findings:");
        for finding in &findings {
            eprintln!("  {finding}");
        }
        std::process::exit(1);
    }
}
