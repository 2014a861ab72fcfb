//! Order placement over HTTP: a separate `ordo serve` process (release build), driven by
//! this load process with N concurrent keep-alive connections, (a) orders spread over
//! 1,000 products, (b) every order for one hot product (a flash sale). Each request is
//! one customer's order, round robin over 20,000 customers, so the per-customer limits and
//! the per-token rate limiter run at their defaults.
//!
//! Against the bound, in the same run: (1) the limit, what PostgreSQL does with combined
//! orders: a hand-written batched placement driven by pgbench, each transaction placing a
//! batch of orders with set-based statements (products locked in id order; orders, items,
//! ledger, history, payments and an `order.created` event row each, like ordo's), the batch
//! size and the clients chosen by trying several and keeping the fastest; (2) the HTTP
//! floor, the same load generator on a request that does no database work (`/healthz` of
//! the same server); (3) the bound they make together, 1 / (1/limit + 1/floor).
//!
//! Variants: the rate limiter off; one webhook
//! endpoint subscribed with a local receiver (its delivery lag measured); WeChat Pay as the
//! default payment provider (placement never waits on it). Afterwards:
//! nothing oversold (stock + units reserved = the start) and `ordo check` clean.
//!
//!     cargo bench --bench orders -- [--seconds 10] [--connections 64,256]
//!         [--backends postgres,sqlite] [--only spread|hot] [--skip-variants]
//!         [--variant limiter-off|endpoint|wechatpay] [--no-baseline] [--rate ORDERS_PER_S]
//!         [--limit-batch N] [--limit-clients N]
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
    /// Skip the limit (pgbench's batched placement).
    baseline: bool,
    /// Orders per second in all, instead of as many as are answered.
    rate: Option<f64>,
    /// The limit's batch size and clients (default: the fastest of several tried).
    limit_batch: Option<u32>,
    limit_clients: Option<u32>,
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
        limit_batch: None,
        limit_clients: None,
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
            "--limit-batch" => {
                args.limit_batch = Some(
                    it.next()
                        .and_then(|s| s.parse().ok())
                        .expect("--limit-batch N"),
                )
            }
            "--limit-clients" => {
                args.limit_clients = Some(
                    it.next()
                        .and_then(|s| s.parse().ok())
                        .expect("--limit-clients N"),
                )
            }
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
            "{}INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_cents) SELECT x, 1 + x % {PRODUCTS}, 'LOAD-' || (1 + x % {PRODUCTS}), 'Load product', 1, 100 FROM {}",
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
            "{}INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_cents) SELECT {past} + x, 1 + x % {PRODUCTS}, 'LOAD-' || (1 + x % {PRODUCTS}), 'Load product', 1, 100 FROM {}",
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
    /// Answers other than the one expected, by status (0: no answer).
    errors: std::collections::BTreeMap<u16, usize>,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.orders as f64 / self.seconds
    }

    /// `0`, or the count and what they were: `37 (429: 37)`.
    fn errors(&self) -> String {
        let total: usize = self.errors.values().sum();
        if total == 0 {
            return "0".to_owned();
        }
        let kinds: Vec<String> = self
            .errors
            .iter()
            .map(|(status, n)| match status {
                0 => format!("no answer: {n}"),
                s => format!("{s}: {n}"),
            })
            .collect();
        format!("{total} ({})", kinds.join(", "))
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
    floor: bool,
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
        let healthz = format!("{base}/healthz");
        tasks.push(tokio::spawn(async move {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
            let mut latencies = Vec::new();
            let mut errors = std::collections::BTreeMap::<u16, usize>::new();
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
                // The floor: the same client, the same connections, no database work.
                let (response, expected) = if floor {
                    (client.get(&healthz).send().await, reqwest::StatusCode::OK)
                } else {
                    let response = client
                        .post(&url)
                        .bearer_auth(token(customer))
                        .json(
                            &serde_json::json!({"items": [{"product_id": product, "quantity": 1}]}),
                        )
                        .send()
                        .await;
                    (response, reqwest::StatusCode::CREATED)
                };
                let status = match response {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.bytes().await;
                        (status != expected).then_some(status.as_u16())
                    }
                    Err(_) => Some(0),
                };
                if sent >= measure_from && Instant::now() <= until {
                    match status {
                        None => latencies.push(sent.elapsed().as_secs_f64() * 1000.0),
                        Some(status) => *errors.entry(status).or_insert(0) += 1,
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = std::collections::BTreeMap::new();
    for t in tasks {
        let (l, e) = t.await.expect("client task");
        latencies.extend(l);
        for (status, n) in e {
            *errors.entry(status).or_insert(0) += n;
        }
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

/// CPU seconds so far: the server, every PostgreSQL process, and this load generator.
#[derive(Clone, Copy)]
struct Cpu {
    ordo: f64,
    postgres: f64,
    load: f64,
}

impl Cpu {
    fn now(server: u32) -> Cpu {
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let of = |stat: &str| -> f64 {
            // After the command name in parentheses: utime and stime are fields 14 and 15.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let get = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (get(11) + get(12)) / tick
        };
        let ordo = std::fs::read_to_string(format!("/proc/{server}/stat"))
            .map(|s| of(&s))
            .unwrap_or(0.0);
        let mut postgres = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let path = entry.path();
            if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "postgres") {
                postgres += std::fs::read_to_string(path.join("stat"))
                    .map(|s| of(&s))
                    .unwrap_or(0.0);
            }
        }
        // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: usage is valid for writes.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cpu {
            ordo,
            postgres,
            load: secs(usage.ru_utime) + secs(usage.ru_stime),
        }
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            ordo: self.ordo - before.ordo,
            postgres: self.postgres - before.postgres,
            load: self.load - before.load,
        }
    }
}

/// Where an order's time went: CPU per order in ordo, PostgreSQL and the load generator
/// (µs), the mean batch, how long an order waited to be combined and a batch took (ms).
#[derive(Clone, Copy)]
struct Profile {
    ordo_us: f64,
    postgres_us: f64,
    load_us: f64,
    batch: f64,
    wait_ms: f64,
    batch_ms: f64,
}

struct Outcome {
    run: Run,
    profile: Profile,
    /// Requests a second the same load generator gets from the server's `/healthz`.
    floor: f64,
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
    let orders_before = scalar(&url, "SELECT COUNT(*) FROM orders").await;
    let cpu_before = Cpu::now(server.id());
    let run = load(&base, scenario, connections, args.seconds, args.rate, false).await;
    let cpu = Cpu::now(server.id()).since(&cpu_before);
    let placed = (scalar(&url, "SELECT COUNT(*) FROM orders").await - orders_before).max(1) as f64;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    let mean = |name: &str| {
        let value = |suffix: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(&format!("{name}_{suffix} ")))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        value("sum") / value("count").max(1.0)
    };
    let profile = Profile {
        ordo_us: cpu.ordo * 1e6 / placed,
        postgres_us: cpu.postgres * 1e6 / placed,
        load_us: cpu.load * 1e6 / placed,
        batch: mean("ordo_placement_batch_size"),
        wait_ms: mean("ordo_placement_wait_seconds") * 1000.0,
        batch_ms: mean("ordo_placement_batch_seconds") * 1000.0,
    };
    // The HTTP floor on the same server, right after, with the same load generator.
    let floor = load(
        &base,
        scenario,
        connections,
        args.seconds.min(5),
        None,
        true,
    )
    .await
    .rate();
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
        profile,
        floor,
        conserved: held == PRODUCTS * STOCK,
        check: check.status.success(),
        lag,
    }
}

/// The limit: a batch of `:batch` orders in one transaction, placed the way ordo places a
/// combined batch, with set-based statements: the products locked in id order, the stock
/// taken once per product, then every order with its item, ledger row, history row,
/// payment and `order.created` event row (about the size of ordo's). The products are
/// picked from the transaction's id, so every statement sees the same ones.
const LIMIT_SCRIPT: &str = r#"
BEGIN;
SELECT id FROM products WHERE id IN
  (SELECT 1 + (txid_current() * 7 + g * 7919) % :products FROM generate_series(1, :batch) g)
  ORDER BY id FOR NO KEY UPDATE;
UPDATE products p SET stock = p.stock - c.n, updated_at = 1
  FROM (SELECT 1 + (txid_current() * 7 + g * 7919) % :products AS id, count(*) AS n
        FROM generate_series(1, :batch) g GROUP BY 1) c
  WHERE p.id = c.id AND p.stock >= c.n;
WITH picks AS (
  SELECT g, 1 + (txid_current() * 7 + g * 7919) % :products AS product_id,
         2 + (txid_current() * 13 + g) % 20000 AS user_id
  FROM generate_series(1, :batch) g),
placed AS (
  INSERT INTO orders (number, user_id, status, total_cents, currency, note, created_at, updated_at, event_seq)
  SELECT 'ORD-L' || txid_current() || '-' || g, user_id, 'pending', 100, 'CNY', NULL, 1, 1, 1 FROM picks
  RETURNING id, number, user_id),
o AS (SELECT placed.id, placed.number, placed.user_id, picks.product_id
      FROM placed JOIN picks ON placed.number = 'ORD-L' || txid_current() || '-' || picks.g),
items AS (
  INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_cents)
  SELECT o.id, o.product_id, p.sku, p.name, 1, 100 FROM o JOIN products p ON p.id = o.product_id),
ledger AS (
  INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
  SELECT product_id, id, -1, 'reserve', 'user:' || user_id, NULL, 1 FROM o),
history AS (
  INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
  SELECT id, NULL, 'pending', 'user:' || user_id, NULL, 1 FROM o),
pay AS (
  INSERT INTO payments (order_id, amount_cents, method, status, expires_at, refund_required, created_at, updated_at)
  SELECT id, 100, 'card', 'pending', 1800001, FALSE, 1, 1 FROM o)
INSERT INTO events (event_id, type, order_id, product_id, seq, data, created_at)
SELECT 'evt_' || md5(number), 'order.created', id, NULL, 1,
  json_build_object(
    'order', json_build_object('id', id, 'number', number, 'user_id', user_id, 'status', 'pending',
      'total_cents', 100, 'currency', 'CNY', 'note', NULL, 'created_at', '2026-12-04T10:00:00.000Z',
      'updated_at', '2026-12-04T10:00:00.000Z', 'paid_at', NULL, 'completed_at', NULL,
      'cancelled_at', NULL, 'cancel_reason', NULL, 'carrier', NULL, 'tracking_number', NULL, 'shipping_address', NULL,
      'items', json_build_array(json_build_object('product_id', product_id, 'sku', 'SKU-' || product_id, 'name', 'Product ' || product_id, 'quantity', 1, 'unit_price_cents', 100)),
      'payments', json_build_array(json_build_object('id', id, 'order_id', id, 'amount_cents', 100,
        'method', 'card', 'status', 'pending', 'expires_at', '2026-12-04T10:30:00.000Z', 'provider', 'manual',
        'provider_ref', NULL, 'refund_required', false, 'created_at', '2026-12-04T10:00:00.000Z'))),
    'seq', 1, 'previous_status', NULL,
    'payment', json_build_object('id', id, 'amount_cents', 100, 'status', 'pending',
      'expires_at', '2026-12-04T10:30:00.000Z'),
    'unpaid_deadline', '2026-12-04T10:30:00.000Z')::text,
  1
FROM o;
COMMIT;
"#;

/// The limit's result: orders a second (batch size x transactions a second), with the batch
/// size and clients it was measured with.
struct Limit {
    rate: f64,
    batch: u32,
    clients: u32,
}

/// Runs the limit's script with pgbench for `seconds` on a freshly prepared database.
async fn run_limit(
    scenario: Scenario,
    batch: u32,
    clients: u32,
    seconds: u64,
    dir: &std::path::Path,
) -> f64 {
    let url = prepare(Backend::Postgres, "ordo_bench_limit", dir).await;
    let work = tempfile::tempdir().expect("temp dir");
    let script = work.path().join("place_batch.sql");
    std::fs::write(&script, LIMIT_SCRIPT).expect("script");
    let products = match scenario {
        Scenario::Spread => PRODUCTS,
        Scenario::Hot => 1,
    };
    let out = Command::new("pgbench")
        .current_dir(work.path())
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-D",
            &format!("products={products}"),
            "-D",
            &format!("batch={batch}"),
            "-f",
        ])
        .arg(&script)
        .arg(&url)
        .output()
        .expect("run pgbench (Debian: postgresql-contrib)");
    assert!(
        out.status.success(),
        "pgbench failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // "tps = 141.2 (without initial connection time)"
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output: {text}"));
    // The placed orders are really there, and nothing was oversold.
    let placed = scalar(
        &url,
        "SELECT COUNT(*) FROM orders WHERE number LIKE 'ORD-L%'",
    )
    .await;
    assert!(placed > 0, "the limit placed nothing");
    tps * f64::from(batch)
}

/// The limit for `scenario`: the batch size and clients given, or the fastest of several
/// tried for a few seconds each, then measured for `seconds`.
async fn bench_limit(scenario: Scenario, args: &Args, dir: &std::path::Path) -> Limit {
    let (batch, clients) = match (args.limit_batch, args.limit_clients) {
        (Some(batch), Some(clients)) => (batch, clients),
        (batch, clients) => {
            let batches = batch.map_or(vec![32, 64, 128], |b| vec![b]);
            let clientss = clients.map_or(vec![2, 4, 8], |c| vec![c]);
            let mut best = (0.0, 0, 0);
            for &b in &batches {
                for &c in &clientss {
                    let rate = run_limit(scenario, b, c, 3, dir).await;
                    eprintln!(
                        "  limit, {}: batch {b}, {c} clients: {rate:.0} orders/s",
                        scenario.name()
                    );
                    if rate > best.0 {
                        best = (rate, b, c);
                    }
                }
            }
            (best.1, best.2)
        }
    };
    let rate = run_limit(scenario, batch, clients, args.seconds, dir).await;
    Limit {
        rate,
        batch,
        clients,
    }
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
                false,
            ));
            println!(
                "{}: {:.0} orders/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
                scenario.name(),
                run.rate(),
                run.p50_ms,
                run.p99_ms,
                run.errors()
            );
        }
        return;
    }
    // The limit, once per scenario (PostgreSQL): before any ordo run, on a database of its own.
    let mut limits: Vec<(Scenario, Limit)> = Vec::new();
    if args.baseline && args.backends.contains(&Backend::Postgres) {
        for &scenario in &args.scenarios {
            eprintln!("{}: the batched limit...", scenario.name());
            let limit = rt.block_on(bench_limit(scenario, &args, dir.path()));
            eprintln!(
                "  {:.0} orders/s (batch {}, {} clients)",
                limit.rate, limit.batch, limit.clients
            );
            limits.push((scenario, limit));
        }
    }
    println!(
        "| database | connections | scenario | variant | ordo orders/s | p50 (ms) | p99 (ms) | errors | limit (orders/s) | HTTP floor (requests/s) | bound (orders/s) | ordo / bound | delivery lag p50 / p99 (ms) | stock conserved | ordo check |"
    );
    println!(
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"
    );
    // Correctness findings: the table is printed whole, then the run fails on any.
    let mut findings = Vec::new();
    let mut profiles: Vec<String> = Vec::new();
    for &backend in &args.backends {
        let connections: Vec<usize> = match backend {
            Backend::Postgres => args.connections.clone(),
            Backend::Sqlite => vec![args.connections[0]],
        };
        for &connections in &connections {
            for &scenario in &args.scenarios {
                let limit = limits
                    .iter()
                    .find(|(s, _)| *s == scenario && backend == Backend::Postgres)
                    .map(|(_, l)| l);
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
                    let (limit_rate, bound, ratio) = match limit {
                        Some(l) => {
                            let bound = 1.0 / (1.0 / l.rate + 1.0 / o.floor);
                            (
                                format!("{:.0} (batch {}, {} clients)", l.rate, l.batch, l.clients),
                                format!("{bound:.0}"),
                                format!("{:.2}", o.run.rate() / bound),
                            )
                        }
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
                    let p = o.profile;
                    profiles.push(format!(
                        "| {backend:?} | {connections} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
                        scenario.name(),
                        variant.name(),
                        p.ordo_us,
                        p.postgres_us,
                        p.load_us,
                        p.batch,
                        p.wait_ms,
                        p.batch_ms
                    ));
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
                        "| {backend:?} | {connections} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {limit_rate} | {:.0} | {bound} | {ratio} | {lag} | {} | {} |",
                        scenario.name(),
                        variant.name(),
                        o.run.rate(),
                        o.run.p50_ms,
                        o.run.p99_ms,
                        o.run.errors(),
                        o.floor,
                        if o.conserved { "yes" } else { "NO" },
                        if o.check { "clean" } else { "FINDINGS" },
                    );
                }
            }
        }
    }
    println!(
        "\n| database | connections | scenario | variant | ordo CPU (µs/order) | PostgreSQL CPU (µs/order) | load generator CPU (µs/order) | mean batch (orders) | waiting to be combined (ms) | batch transaction (ms) |"
    );
    println!("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &profiles {
        println!("{row}");
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
