//! The staff console's pages on a big shop: 1,000,000 orders and 100,000 customers on
//! PostgreSQL (seeded set-based, with a realistic mix of statuses and a few thousand
//! unpaid; every customer with a phone and the shop's id for it, every order with its
//! address and its lines' SKU and name), a real `ordo serve` (in Asia/Shanghai, in yuan), a
//! signed-in session, and each page requested again and again; prints p50 and p95 per page
//! (the full response over loopback, from a client on the same machine).
//!
//! `cargo bench --bench console [-- --orders N] [--customers N] [--repeat N] [--keep]`; the
//! server is `ORDO_BENCH_DATABASE_URL` (default: the local PostgreSQL). `--keep` leaves the
//! database `ordo_bench_console` behind, to look at query plans.

mod common;

use common::{execute, fresh_pg_database, percentile, scalar};
use ordo::domain::UserRole;
use ordo::{Clock, Db, Ordo};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    orders: i64,
    customers: i64,
    repeat: usize,
    keep: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        orders: 1_000_000,
        customers: 100_000,
        repeat: 40,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--orders" => args.orders = it.next().and_then(|v| v.parse().ok()).expect("--orders N"),
            "--customers" => {
                args.customers = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--customers N")
            }
            "--repeat" => args.repeat = it.next().and_then(|v| v.parse().ok()).expect("--repeat N"),
            "--keep" => args.keep = true,
            // `cargo bench` passes --bench.
            _ => {}
        }
    }
    args
}

const PRODUCTS: i64 = 200;
const PENDING: i64 = 3_000;
const DAY: i64 = 86_400_000;

/// Everything but the staff user (made through the library, for a real token): customers,
/// products, orders over the last year (created_at rising with id) with one item, one
/// payment, a history row and the ledger rows each; the newest `PENDING` orders unpaid,
/// placed over the last hour; about a thousand late payments; audit rows.
fn seed_sql(orders: i64, customers: i64, now: i64) -> String {
    let bulk = orders - PENDING;
    let start = now - 365 * DAY;
    let span = 365 * DAY - 2 * 3_600_000;
    format!(
        "
INSERT INTO users (name, role, external_id, phone, phone_digits, created_at, updated_at)
SELECT (ARRAY['王', '李', '张', '刘', '陈', '杨', '黄', '赵'])[1 + g % 8]
         || (ARRAY['伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋'])[1 + (g / 8) % 10]
         || ' ' || g,
       'customer', 'shop-' || g,
       '13' || (g % 10) || ' ' || lpad((g % 10000)::text, 4, '0') || ' ' || lpad(((g * 7919) % 10000)::text, 4, '0'),
       '13' || (g % 10) || lpad((g % 10000)::text, 4, '0') || lpad(((g * 7919) % 10000)::text, 4, '0'),
       {start}, {start}
FROM generate_series(1, {customers}) g;

INSERT INTO products (sku, name, price_cents, currency, stock, sales_count, active, created_at, updated_at)
SELECT 'SKU-' || g, '商品 ' || g, 500 + g * 10, 'CNY', 0, 0, TRUE, {start}, {start}
FROM generate_series(1, {PRODUCTS}) g;

CREATE TEMP TABLE seed AS
SELECT g AS id,
       CASE WHEN g > {bulk} THEN {now} - 3600000 + (g - {bulk}) * 3600000 / {PENDING}
            ELSE {start} + g * ({span} / {bulk}) END AS created_at,
       (g % {PRODUCTS}) + 1 AS product_id,
       1 + g % 3 AS quantity,
       2 + g % {customers} AS user_id,
       CASE WHEN g > {bulk} THEN 'pending'
            WHEN (g * 7919) % 100 < 70 THEN 'completed'
            WHEN (g * 7919) % 100 < 80 THEN 'shipped'
            WHEN (g * 7919) % 100 < 85 THEN 'paid'
            WHEN (g * 7919) % 100 < 95 THEN 'cancelled'
            WHEN (g * 7919) % 100 < 97 THEN 'refunded'
            WHEN (g * 7919) % 100 < 98 THEN 'refunding'
            ELSE 'completed' END AS status
FROM generate_series(1::bigint, {orders}::bigint) g;

INSERT INTO orders (id, number, user_id, status, total_cents, currency, note, created_at, updated_at,
                    paid_at, completed_at, cancelled_at, cancel_reason, carrier, tracking_number, event_seq,
                    shipping_address)
OVERRIDING SYSTEM VALUE
SELECT s.id, 'ORD-B' || lpad(s.id::text, 13, '0'), s.user_id, s.status,
       (500 + s.product_id * 10) * s.quantity, 'CNY',
       CASE WHEN s.id % 10 = 0 THEN 'please ring twice' END,
       s.created_at, s.created_at,
       CASE WHEN s.status IN ('paid', 'shipped', 'completed', 'refunding', 'refunded') THEN s.created_at + 60000 END,
       CASE WHEN s.status = 'completed' THEN s.created_at + 3 * {DAY} END,
       CASE WHEN s.status = 'cancelled' THEN s.created_at + 1800000 END,
       CASE WHEN s.status = 'cancelled' THEN 'payment timeout' END,
       CASE WHEN s.status IN ('shipped', 'completed') THEN 'DHL' END,
       CASE WHEN s.status IN ('shipped', 'completed') THEN 'T' || s.id END,
       1,
       json_build_object('name', '收件人 ' || s.user_id, 'phone', '138 0013 ' || lpad((s.user_id % 10000)::text, 4, '0'),
                         'country', 'CN', 'province', '上海市', 'city', '上海市', 'district', '浦东新区',
                         'town', NULL, 'line', '世纪大道 ' || s.user_id || ' 号', 'postal_code', '200120')::text
FROM seed s;
SELECT setval(pg_get_serial_sequence('orders', 'id'), {orders});

INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_cents)
SELECT id, product_id, 'SKU-' || product_id, '商品 ' || product_id, quantity, 500 + product_id * 10 FROM seed;

INSERT INTO payments (order_id, amount_cents, method, status, expires_at, provider_ref, refund_required, created_at, updated_at)
SELECT s.id, (500 + s.product_id * 10) * s.quantity, 'card',
       CASE WHEN s.status = 'pending' THEN 'pending'
            WHEN s.status = 'cancelled' AND s.id % 97 = 0 THEN 'succeeded'
            WHEN s.status = 'cancelled' THEN 'expired'
            WHEN s.status = 'refunded' THEN 'refunded'
            ELSE 'succeeded' END,
       s.created_at + 1800000,
       CASE WHEN s.status NOT IN ('pending', 'cancelled') THEN 'psp_' || s.id END,
       s.status = 'cancelled' AND s.id % 97 = 0,
       s.created_at, s.created_at
FROM seed s;

INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
SELECT id, NULL, 'pending', 'user:' || user_id, NULL, created_at FROM seed;

INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
SELECT p.id, NULL, 1000000, 'adjust', 'cli:bench', 'opening stock', {start} FROM products p;
INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
SELECT product_id, id, -quantity, 'reserve', 'user:' || user_id, NULL, created_at FROM seed;
INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
SELECT product_id, id, quantity, 'release', 'system:expiry', 'payment timeout', created_at + 1800000
FROM seed WHERE status = 'cancelled';
UPDATE products p SET stock = m.total FROM
  (SELECT product_id, SUM(delta) AS total FROM stock_movements GROUP BY product_id) m
WHERE m.product_id = p.id;

INSERT INTO audit_log (actor, user_id, action, object_type, object_id, detail, request_id, created_at)
SELECT 'user:1', 1, 'order.ship', 'order', (g * 13)::text, '{{\"carrier\": \"DHL\"}}', 'bench-' || g,
       {start} + g * 600000
FROM generate_series(1::bigint, 50000::bigint) g;

DROP TABLE seed;
"
    )
}

/// The phone the seeding gives customer `g`, as its digits (how staff type it).
fn customer_phone(g: i64) -> String {
    format!("13{}{:04}{:04}", g % 10, g % 10_000, (g * 7919) % 10_000)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Measured {
    page: &'static str,
    path: String,
    status: u16,
    p50: f64,
    p95: f64,
    max: f64,
    bytes: usize,
}

async fn run(args: &Args) {
    let name = "ordo_bench_console";
    let url = fresh_pg_database(name).await;
    let db = Db::connect(&url, 2).await.expect("connect");
    db.migrate().await.expect("migrate");
    let ordo = Ordo::new(db.clone(), ordo::Policy::default(), Clock::system());
    let (_, token) = ordo
        .create_user_with_token("bench staff", UserRole::Staff)
        .await
        .expect("staff token");
    let now = chrono::Utc::now().timestamp_millis();
    eprintln!("seeding {} orders...", args.orders);
    let seeding = Instant::now();
    execute(&url, &seed_sql(args.orders, args.customers, now)).await;
    execute(&url, "VACUUM ANALYZE").await;
    eprintln!("seeded in {:.0} s", seeding.elapsed().as_secs_f64());
    db.close().await;
    let counted = scalar(
        &url,
        "SELECT CAST(SUM(n) AS BIGINT) FROM order_status_counts",
    )
    .await;
    assert_eq!(counted, args.orders, "the counters count every order");

    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args([
            "serve",
            "--no-scheduler",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("ORDO_DATABASE_URL", &url)
        .env("ORDO_TIME_ZONE", "Asia/Shanghai")
        .env("ORDO_CURRENCY", "CNY")
        .env("ORDO_LOG", "warn")
        .env("ORDO_RATE_LIMIT_PER_SECOND", "0")
        .stdout(Stdio::null())
        .spawn()
        .expect("start ordo serve");
    let base = format!("http://127.0.0.1:{port}");
    ordo::install_tls_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signed_in = client
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", token.expose()))
        .send()
        .await
        .expect("sign in");
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("ordo_session="))
        .and_then(|v| v.split(';').next())
        .map(|v| format!("ordo_session={v}"))
        .expect("session cookie");

    let middle = args.orders / 2;
    let middle_at = scalar(
        &url,
        &format!("SELECT created_at FROM orders WHERE id = {middle}"),
    )
    .await;
    let year_ago = chrono::DateTime::from_timestamp_millis(now - 330 * DAY)
        .expect("date")
        .date_naive();
    let month_later = year_ago + chrono::Duration::days(30);
    let pages: Vec<(&'static str, String)> = vec![
        ("dashboard", "/console/".into()),
        ("orders, all", "/console/orders".into()),
        (
            "orders, status tab (shipped)",
            "/console/orders?status=shipped".into(),
        ),
        (
            "orders, status tab (pending)",
            "/console/orders?status=pending".into(),
        ),
        (
            "orders, 30 days eleven months ago",
            format!("/console/orders?from={year_ago}&until={month_later}"),
        ),
        (
            "orders, refunded in those 30 days",
            format!("/console/orders?status=refunded&from={year_ago}&until={month_later}"),
        ),
        ("orders, one product", "/console/orders?product=7".into()),
        (
            "orders, one customer",
            "/console/orders?customer=1234".into(),
        ),
        (
            "orders, page at the 500,000th",
            format!("/console/orders?before={middle_at}.{middle}"),
        ),
        (
            "orders, search by number",
            format!("/console/orders?q=ORD-B{middle:013}"),
        ),
        (
            "order detail (customer, address)",
            format!("/console/orders/{middle}"),
        ),
        (
            "packing slip",
            format!("/console/orders/{middle}/packing-slip"),
        ),
        (
            "packing slips, paid orders (200 a sheet)",
            "/console/packing-slips".into(),
        ),
        ("customers, newest", "/console/customers".into()),
        (
            "customers, search by name (common)",
            "/console/customers?q=%E7%8E%8B%E4%BC%9F".into(),
        ),
        (
            "customers, search by name (one)",
            format!("/console/customers?q={}", args.customers / 2),
        ),
        (
            "customers, search by phone",
            format!(
                "/console/customers?q={}",
                customer_phone(args.customers / 3)
            ),
        ),
        (
            "customers, search by external id",
            format!("/console/customers?q=shop-{}", args.customers / 4),
        ),
        (
            "customers, search that finds nobody",
            "/console/customers?q=nobody".into(),
        ),
        (
            "customer page",
            format!("/console/customers/{}", args.customers / 2),
        ),
        ("expiring soon", "/console/expiring".into()),
        (
            "expiring soon, rows (htmx)",
            "/console/expiring/rows".into(),
        ),
        ("sweep preview", "/console/sweep".into()),
        ("late payments", "/console/late-payments".into()),
        ("products", "/console/products".into()),
        ("product with ledger", "/console/products/7".into()),
        ("webhooks", "/console/webhooks".into()),
        ("tokens", "/console/tokens".into()),
        ("audit log", "/console/audit".into()),
        (
            "CSV export, refunding (~10,000 rows)",
            "/console/orders.csv?status=refunding".into(),
        ),
    ];
    let mut results = Vec::new();
    for (page, path) in pages {
        let mut samples = Vec::with_capacity(args.repeat);
        let mut status = 0;
        let mut bytes = 0;
        for i in 0..args.repeat + 3 {
            let started = Instant::now();
            let response = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("request");
            status = response.status().as_u16();
            let body = response.bytes().await.expect("body");
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            bytes = body.len();
            // The first three warm the caches.
            if i >= 3 {
                samples.push(ms);
            }
        }
        samples.sort_by(f64::total_cmp);
        let measured = Measured {
            page,
            path,
            status,
            p50: percentile(&samples, 50.0),
            p95: percentile(&samples, 95.0),
            max: samples.last().copied().unwrap_or(0.0),
            bytes,
        };
        eprintln!(
            "{}: p50 {:.1} ms, p95 {:.1} ms",
            measured.page, measured.p50, measured.p95
        );
        results.push(measured);
    }
    // SAFETY: sending SIGTERM to our own child.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = server.wait();

    println!("| page | path | status | p50 (ms) | p95 (ms) | max (ms) | bytes |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for m in &results {
        println!(
            "| {} | `{}` | {} | {:.1} | {:.1} | {:.1} | {} |",
            m.page, m.path, m.status, m.p50, m.p95, m.max, m.bytes
        );
    }
    println!(
        "\n{} orders ({} unpaid), {} customers, {} products on PostgreSQL; {} requests per page after 3 warm-up ones, one at a time, release build",
        args.orders, PENDING, args.customers, PRODUCTS, args.repeat
    );
    let slow: Vec<&str> = results
        .iter()
        .filter(|m| m.p95 >= 200.0)
        .map(|m| m.page)
        .collect();
    if !slow.is_empty() {
        println!("over 200 ms at p95: {}", slow.join(", "));
    }
    if !args.keep {
        let admin = Db::connect(&common::admin_url(), 1).await.expect("connect");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(admin.pool())
        .await;
        admin.close().await;
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(&args));
}
