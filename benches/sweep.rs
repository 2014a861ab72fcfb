//! Sweep benchmark: N overdue orders (100 products, one item each), cancelled by
//! `ordo cancel-unpaid-orders` (the real binary, as cron runs it), against the limit: the
//! same work done by one hand-written set-based SQL statement on an identical copy.
//!
//!     cargo bench --bench sweep -- [--sizes 100000,1000000] [--backends sqlite,postgres] [--batch-size 1000]
//!         [--states vacuumed,written]
//!     cargo bench --bench sweep -- --provider [--sizes 1000,10000] [--provider-delay-ms 50]
//!         [--provider-concurrency 32]
//!
//! With `--provider`: every overdue order has a payment open at WeChat Pay (a double that
//! answers after the delay), so the sweep asks and closes each before cancelling it. Its
//! rate is held against the bound the concurrency and two round trips per order allow:
//! concurrency / (2 x delay).
//!
//! PostgreSQL: `ORDO_BENCH_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres),
//! a user that may create databases. Prints a Markdown table for BENCHMARKS.md.

mod common;
#[path = "../tests/doubles/mod.rs"]
mod doubles;

use common::{Backend, pg_url};
use ordo::Db;
use std::process::Command;

use std::time::{Duration, Instant};

const PRODUCTS: i64 = 100;

struct Args {
    sizes: Vec<i64>,
    backends: Vec<Backend>,
    batch_size: u32,
    /// Which seeded states to measure: after `VACUUM ANALYZE` (true), just written (false).
    states: Vec<bool>,
    /// Every order's payment open at WeChat Pay's double.
    provider: bool,
    provider_delay_ms: u64,
    provider_concurrency: u32,
}

fn parse_args() -> Args {
    let mut args = Args {
        sizes: vec![100_000, 1_000_000],
        backends: vec![Backend::Postgres, Backend::Sqlite],
        batch_size: 1000,
        states: vec![true, false],
        provider: false,
        provider_delay_ms: 50,
        provider_concurrency: 32,
    };
    let mut sizes_given = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--provider" => args.provider = true,
            "--provider-delay-ms" => {
                args.provider_delay_ms = it
                    .next()
                    .expect("--provider-delay-ms N")
                    .parse()
                    .expect("a number")
            }
            "--provider-concurrency" => {
                args.provider_concurrency = it
                    .next()
                    .expect("--provider-concurrency N")
                    .parse()
                    .expect("a number")
            }
            "--sizes" => {
                sizes_given = true;
                args.sizes = it
                    .next()
                    .expect("--sizes N,N")
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse().expect("a number"))
                    .collect()
            }
            "--backends" => args.backends = common::backends(it.next()),
            "--batch-size" => {
                args.batch_size = it
                    .next()
                    .expect("--batch-size N")
                    .parse()
                    .expect("a number")
            }
            "--states" => {
                args.states = it
                    .next()
                    .expect("--states vacuumed,written")
                    .split(',')
                    .map(|s| match s.trim() {
                        "vacuumed" => true,
                        "written" => false,
                        other => panic!("--states: {other:?} is neither vacuumed nor written"),
                    })
                    .collect()
            }
            _ => {} // `cargo bench` passes --bench
        }
    }
    if args.provider && !sizes_given {
        args.sizes = vec![1_000, 10_000];
    }
    args
}

/// Seeds `n` overdue pending orders exactly as ordo would have written them: products with
/// an opening-stock ledger row, one item per order, its reserve row, its history row and
/// its expired payment.
fn seed_sql(backend: Backend, n: i64, base: i64, vacuumed: bool) -> Vec<String> {
    let stock = 2 * n / PRODUCTS + 10;
    let series = |body: &str| match backend {
        Backend::Postgres => format!("{body} FROM generate_series(1, {n}) AS g(x)"),
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) {body} FROM g"
        ),
    };
    let products = match backend {
        Backend::Postgres => format!(
            "INSERT INTO products (id, sku, name, price_cents, currency, stock, sales_count, active, created_at, updated_at)
             SELECT x, 'BENCH-' || x, 'Bench product', 100, 'EUR', {stock}, 0, TRUE, 0, 0 FROM generate_series(1, {PRODUCTS}) AS g(x)"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {PRODUCTS})
             INSERT INTO products (id, sku, name, price_cents, currency, stock, sales_count, active, created_at, updated_at)
             SELECT x, 'BENCH-' || x, 'Bench product', 100, 'EUR', {stock}, 0, 1, 0, 0 FROM g"
        ),
    };
    let mut sql = vec![
        "INSERT INTO users (id, name, role, created_at) VALUES (1, 'bench', 'customer', 0)".to_owned(),
        products,
        "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
         SELECT id, NULL, stock, 'adjust', 'user:1', 'opening stock', 0 FROM products"
            .to_owned(),
        series(&format!(
            "INSERT INTO orders (id, number, user_id, status, total_cents, currency, created_at, updated_at, event_seq)
             SELECT x, 'ORD-BENCH-' || x, 1, 'pending', 100, 'EUR', {base} + x, {base} + x, 1"
        )),
        series(&format!(
            "INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_cents)
             SELECT x, (x % {PRODUCTS}) + 1, 'BENCH-' || ((x % {PRODUCTS}) + 1), 'Bench product', 1, 100"
        )),
        series(&format!(
            "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
             SELECT (x % {PRODUCTS}) + 1, x, -1, 'reserve', 'user:1', NULL, {base} + x"
        )),
        series(&format!(
            "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
             SELECT x, NULL, 'pending', 'user:1', NULL, {base} + x"
        )),
        series(&format!(
            "INSERT INTO events (event_id, type, order_id, product_id, seq, data, created_at)
             SELECT 'evt_bench' || x, 'order.created', x, NULL, 1, '{{}}', {base} + x"
        )),
        series(&format!(
            "INSERT INTO payments (id, order_id, amount_cents, method, status, expires_at, provider_ref, refund_required, created_at, updated_at)
             SELECT x, x, 100, 'card', 'pending', {base} + x + 1800000, NULL, {}, {base} + x, {base} + x",
            if backend == Backend::Postgres { "FALSE" } else { "0" }
        )),
        "UPDATE products SET stock = stock - (SELECT COUNT(*) FROM order_items WHERE product_id = products.id)"
            .to_owned(),
    ];
    if backend == Backend::Postgres {
        for table in ["users", "products", "orders", "payments", "events"] {
            sql.push(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            ));
        }
        if vacuumed {
            sql.push("VACUUM ANALYZE".to_owned());
        }
    } else if vacuumed {
        sql.push("ANALYZE".to_owned());
    }
    sql
}

/// The limit: the sweep's whole work as one set-based statement (PostgreSQL), or the
/// fewest set-based statements in one transaction (SQLite has no data-modifying CTEs).
/// With `events`, it also writes each order's `order.expired` event, its data (the order
/// with its items and payments, the units released) built in SQL.
fn baseline_sql(backend: Backend, cutoff: i64, now: i64, events: bool) -> Vec<String> {
    let due = format!(
        "SELECT o.id FROM orders o WHERE o.status = 'pending' AND o.created_at <= {cutoff}
           AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id
             AND (p.status = 'succeeded' OR (p.status = 'pending' AND p.expires_at > {now})))"
    );
    match backend {
        Backend::Postgres => {
            let ts = |col: &str| {
                format!(
                    "to_char(to_timestamp({col} / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                )
            };
            let events_cte = if events {
                format!(
                    ", ev AS (
               INSERT INTO events (event_id, type, order_id, product_id, seq, data, created_at)
               SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), 'order.expired', c.id, NULL, c.event_seq,
                 json_build_object(
                   'order', json_build_object('id', c.id, 'number', c.number, 'user_id', c.user_id,
                     'status', c.status, 'total_cents', c.total_cents, 'currency', c.currency, 'note', c.note,
                     'created_at', {created}, 'updated_at', {updated}, 'paid_at', NULL, 'completed_at', NULL,
                     'cancelled_at', {updated}, 'cancel_reason', c.cancel_reason, 'carrier', c.carrier,
                     'tracking_number', c.tracking_number,
                     'items', (SELECT json_agg(json_build_object('product_id', i.product_id, 'quantity', i.quantity,
                                'unit_price_cents', i.unit_price_cents)) FROM order_items i WHERE i.order_id = c.id),
                     'payments', (SELECT json_agg(json_build_object('id', p.id, 'order_id', p.order_id,
                                'amount_cents', p.amount_cents, 'method', p.method, 'status', 'expired',
                                'expires_at', {expires}, 'provider_ref', p.provider_ref,
                                'refund_required', p.refund_required, 'refund_ref', p.refund_ref,
                                'created_at', {pcreated}, 'updated_at', {updated}))
                                FROM payments p WHERE p.order_id = c.id)),
                   'seq', c.event_seq, 'previous_status', 'pending',
                   'units_released', (SELECT json_agg(json_build_object('product_id', i.product_id, 'quantity', i.quantity))
                                      FROM order_items i WHERE i.order_id = c.id))::text,
                 {now}
               FROM cancelled c)",
                    created = ts("c.created_at"),
                    updated = ts("c.updated_at"),
                    expires = ts("p.expires_at"),
                    pcreated = ts("p.created_at"),
                )
            } else {
                String::new()
            };
            vec![format!(
                "WITH due AS ({due}),
             cancelled AS (
               UPDATE orders o SET status = 'cancelled', updated_at = {now}, cancelled_at = {now},
                      cancel_reason = 'payment timeout', event_seq = o.event_seq + 1
               FROM due WHERE o.id = due.id RETURNING o.*),
             history AS (
               INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
               SELECT id, 'pending', 'cancelled', 'system:expiry', 'payment timeout', {now} FROM cancelled),
             items AS (
               SELECT i.order_id, i.product_id, i.quantity FROM order_items i JOIN cancelled c ON c.id = i.order_id),
             ledger AS (
               INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
               SELECT product_id, order_id, quantity, 'release', 'system:expiry', 'payment timeout', {now} FROM items),
             closed AS (
               UPDATE payments p SET status = 'expired', updated_at = {now}
               FROM cancelled c WHERE p.order_id = c.id AND p.status = 'pending'){events_cte}
             UPDATE products pr SET stock = pr.stock + s.units, updated_at = {now}
             FROM (SELECT product_id, SUM(quantity) AS units FROM items GROUP BY product_id) s
             WHERE pr.id = s.product_id"
            )]
        }
        Backend::Sqlite => {
            let ts = |col: &str| {
                format!(
                    "(strftime('%Y-%m-%dT%H:%M:%S', {col} / 1000, 'unixepoch') || '.' || printf('%03d', {col} % 1000) || 'Z')"
                )
            };
            let mut statements = vec![
                "BEGIN IMMEDIATE".to_owned(),
                format!("CREATE TEMP TABLE due AS {due}"),
                format!(
                    "UPDATE orders SET status = 'cancelled', updated_at = {now}, cancelled_at = {now},
                   cancel_reason = 'payment timeout', event_seq = event_seq + 1 WHERE id IN (SELECT id FROM due)"
                ),
                format!(
                    "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
                 SELECT id, 'pending', 'cancelled', 'system:expiry', 'payment timeout', {now} FROM due"
                ),
                format!(
                    "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
                 SELECT i.product_id, i.order_id, i.quantity, 'release', 'system:expiry', 'payment timeout', {now}
                 FROM order_items i JOIN due ON due.id = i.order_id"
                ),
                format!(
                    "UPDATE products SET stock = products.stock + s.units, updated_at = {now}
                 FROM (SELECT i.product_id, SUM(i.quantity) AS units FROM order_items i
                       JOIN due ON due.id = i.order_id GROUP BY i.product_id) s
                 WHERE products.id = s.product_id"
                ),
                format!(
                    "UPDATE payments SET status = 'expired', updated_at = {now}
                 WHERE status = 'pending' AND order_id IN (SELECT id FROM due)"
                ),
            ];
            if events {
                statements.push(format!(
                    "INSERT INTO events (event_id, type, order_id, product_id, seq, data, created_at)
                 SELECT 'evt_' || lower(hex(randomblob(16))), 'order.expired', o.id, NULL, o.event_seq,
                   json_object(
                     'order', json_object('id', o.id, 'number', o.number, 'user_id', o.user_id,
                       'status', o.status, 'total_cents', o.total_cents, 'currency', o.currency, 'note', o.note,
                       'created_at', {created}, 'updated_at', {updated}, 'paid_at', NULL, 'completed_at', NULL,
                       'cancelled_at', {updated}, 'cancel_reason', o.cancel_reason, 'carrier', o.carrier,
                       'tracking_number', o.tracking_number,
                       'items', (SELECT json_group_array(json_object('product_id', i.product_id, 'quantity', i.quantity,
                                  'unit_price_cents', i.unit_price_cents)) FROM order_items i WHERE i.order_id = o.id),
                       'payments', (SELECT json_group_array(json_object('id', p.id, 'order_id', p.order_id,
                                  'amount_cents', p.amount_cents, 'method', p.method, 'status', p.status,
                                  'expires_at', {expires}, 'provider_ref', p.provider_ref,
                                  'refund_required', json(CASE WHEN p.refund_required THEN 'true' ELSE 'false' END),
                                  'refund_ref', p.refund_ref, 'created_at', {pcreated}, 'updated_at', {pupdated}))
                                  FROM payments p WHERE p.order_id = o.id)),
                     'seq', o.event_seq, 'previous_status', 'pending',
                     'units_released', (SELECT json_group_array(json_object('product_id', i.product_id, 'quantity', i.quantity))
                                        FROM order_items i WHERE i.order_id = o.id)),
                   {now}
                 FROM orders o JOIN due ON due.id = o.id",
                    created = ts("o.created_at"),
                    updated = ts("o.updated_at"),
                    expires = ts("p.expires_at"),
                    pcreated = ts("p.created_at"),
                    pupdated = ts("p.updated_at"),
                ));
            }
            statements.push("COMMIT".to_owned());
            statements
        }
    }
}

async fn execute_all(url: &str, statements: &[String]) -> Duration {
    let db = Db::connect(url, 1).await.expect("connect");
    let mut conn = db.pool().acquire().await.expect("connection");
    let started = Instant::now();
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }
    let elapsed = started.elapsed();
    drop(conn);
    db.close().await;
    elapsed
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let db = Db::connect(url, 1).await.expect("connect");
    let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.pool())
        .await
        .expect(sql);
    db.close().await;
    v
}

/// Runs `program args` with `ORDO_LOG=warn` (or `ORDO_BENCH_SWEEP_LOG`, to profile),
/// returning its wall time, peak RSS in KiB
/// (from wait4) and stdout. Started with posix_spawn (vfork semantics): a forked copy of
/// this benchmark would count its own memory in the child's peak RSS.
fn run_measured(program: &str, args: &[&str]) -> (Duration, i64, String, i32) {
    use std::ffi::CString;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-element array for pipe to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    let (read_fd, write_fd) = (fds[0], fds[1]);
    let argv: Vec<CString> = std::iter::once(program)
        .chain(args.iter().copied())
        .map(|a| CString::new(a).expect("argument"))
        .collect();
    let envp: Vec<CString> = std::env::vars()
        .filter(|(k, _)| k != "ORDO_LOG")
        .map(|(k, v)| format!("{k}={v}"))
        .chain(std::iter::once(format!(
            "ORDO_LOG={}",
            std::env::var("ORDO_BENCH_SWEEP_LOG").unwrap_or_else(|_| "warn".to_owned())
        )))
        .map(|e| CString::new(e).expect("environment"))
        .collect();
    let mut argv_ptrs: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr() as *mut _).collect();
    envp_ptrs.push(std::ptr::null_mut());
    // The child's peak RSS starts from ours: the kernel carries the spawning address
    // space's high-water mark across exec. So give freed heap back and reset our own
    // high-water mark (clear_refs 5) first, and report what we hold.
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let own = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(str::to_owned)
        .unwrap_or_default();
    eprintln!("benchmark process before spawning: {own}");
    let started = Instant::now();
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file actions are initialised before use and destroyed after; argv and envp
    // are null-terminated arrays of C strings that outlive the call.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawn_file_actions_adddup2(&mut actions, write_fd, 1);
        libc::posix_spawn_file_actions_addclose(&mut actions, read_fd);
        let rc = libc::posix_spawn(
            &mut pid,
            argv[0].as_ptr(),
            &actions,
            std::ptr::null(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
        );
        libc::posix_spawn_file_actions_destroy(&mut actions);
        assert_eq!(rc, 0, "posix_spawn {program}");
        libc::close(write_fd);
    }
    // SAFETY: read_fd is the pipe's read end, owned from here on.
    let mut stdout = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(read_fd) };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).ok();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child; status and usage are valid for writes.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let elapsed = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (elapsed, usage.ru_maxrss, out, code)
}

struct Row {
    backend: Backend,
    n: i64,
    vacuumed: bool,
    seed_s: f64,
    limit_s: f64,
    limit_events_s: Option<f64>,
    sweep_s: f64,
    sweep_no_events_s: Option<f64>,
    sweep_wall_s: f64,
    rss_mib: f64,
}

/// Where the copies live: the swept database and its copies for the other runs.
fn url_of(backend: Backend, admin: &str, dir: &std::path::Path, name: &str) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        Backend::Postgres => pg_url(admin, name),
    }
}

async fn copy_database(backend: Backend, admin: &str, dir: &std::path::Path, from: &str, to: &str) {
    match backend {
        Backend::Sqlite => {
            let db = Db::connect(&url_of(backend, admin, dir, from), 1)
                .await
                .expect("connect");
            sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(db.pool())
                .await
                .expect("checkpoint");
            db.close().await;
            std::fs::copy(dir.join(format!("{from}.db")), dir.join(format!("{to}.db")))
                .expect("copy");
        }
        Backend::Postgres => {
            let admin_db = Db::connect(admin, 1).await.expect("connect");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {to} TEMPLATE {from}"
            )))
            .execute(admin_db.pool())
            .await
            .expect("copy database");
            admin_db.close().await;
        }
    }
}

/// Runs the real binary's sweep on `url`; its duration (summary's) and wall time and
/// peak RSS.
fn sweep(url: &str, batch_size: u32, n: i64, events: bool) -> (f64, f64, f64) {
    // SAFETY: set before the child is spawned; this benchmark runs one sweep at a time.
    unsafe {
        std::env::set_var("ORDO_EVENTS", if events { "true" } else { "false" });
    }
    let batch = batch_size.to_string();
    let (wall, rss_kib, stdout, code) = run_measured(
        env!("CARGO_BIN_EXE_ordo"),
        &[
            "--database-url",
            url,
            "cancel-unpaid-orders",
            "--json",
            "--batch-size",
            &batch,
        ],
    );
    assert_eq!(code, 0, "sweep failed: {stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("json summary");
    assert_eq!(summary["cancelled"].as_i64(), Some(n), "{summary}");
    (
        summary["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        wall.as_secs_f64(),
        rss_kib as f64 / 1024.0,
    )
}

async fn bench_one(
    backend: Backend,
    n: i64,
    batch_size: u32,
    vacuumed: bool,
    variants: bool,
    dir: &std::path::Path,
) -> Row {
    let admin = std::env::var("ORDO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let names = [
        "ordo_bench_sweep",
        "ordo_bench_limit",
        "ordo_bench_limit_events",
        "ordo_bench_sweep_no_events",
    ];
    match backend {
        Backend::Sqlite => {
            for name in names {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(dir.join(format!("{name}.db{suffix}")));
                }
            }
        }
        Backend::Postgres => {
            let admin_db = Db::connect(&admin, 1).await.expect("connect to PostgreSQL");
            for name in names {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(admin_db.pool())
                .await
                .expect("drop");
            }
            sqlx::raw_sql("CREATE DATABASE ordo_bench_sweep")
                .execute(admin_db.pool())
                .await
                .expect("create");
            admin_db.close().await;
        }
    }
    let swept_url = url_of(backend, &admin, dir, names[0]);
    let db = Db::connect(&swept_url, 1).await.expect("connect");
    db.migrate().await.expect("migrate");
    db.close().await;

    let now = chrono::Utc::now().timestamp_millis();
    let base = now - 24 * 3_600_000;
    let started = Instant::now();
    execute_all(&swept_url, &seed_sql(backend, n, base, vacuumed)).await;
    let seed_s = started.elapsed().as_secs_f64();
    if std::env::var("ORDO_BENCH_SEED_ONLY").is_ok() {
        eprintln!("seeded {swept_url}");
        std::process::exit(0);
    }
    // Identical copies of the very same state for the other runs.
    let copies: &[&str] = if variants { &names[1..] } else { &names[1..2] };
    for name in copies {
        copy_database(backend, &admin, dir, names[0], name).await;
    }

    let cutoff = now - 30 * 60_000;
    let limit_url = url_of(backend, &admin, dir, names[1]);
    let limit = execute_all(&limit_url, &baseline_sql(backend, cutoff, now, false)).await;
    let limit_events = if variants {
        let url = url_of(backend, &admin, dir, names[2]);
        Some(
            execute_all(&url, &baseline_sql(backend, cutoff, now, true))
                .await
                .as_secs_f64(),
        )
    } else {
        None
    };
    let sweep_no_events = variants.then(|| {
        sweep(
            &url_of(backend, &admin, dir, names[3]),
            batch_size,
            n,
            false,
        )
        .0
    });
    let (sweep_s, wall, rss) = sweep(&swept_url, batch_size, n, true);

    // Same outcome as the limit, and the invariants hold.
    let probe = "SELECT CAST(SUM(stock) AS BIGINT) + (SELECT COUNT(*) FROM orders WHERE status = 'cancelled')
                 + (SELECT COUNT(*) FROM stock_movements) + (SELECT COUNT(*) FROM order_status_history)
                 + (SELECT COUNT(*) FROM payments WHERE status = 'expired') FROM products";
    assert_eq!(
        scalar(&swept_url, probe).await,
        scalar(&limit_url, probe).await
    );
    let events = "SELECT COUNT(*) FROM events WHERE type = 'order.expired'";
    assert_eq!(scalar(&swept_url, events).await, n);
    let check = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["--database-url", &swept_url, "check"])
        .env("ORDO_LOG", "warn")
        .output()
        .expect("ordo check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    if backend == Backend::Sqlite && std::env::var("ORDO_BENCH_KEEP").is_err() {
        for name in names {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(dir.join(format!("{name}.db{suffix}")));
            }
        }
    }
    Row {
        backend,
        n,
        vacuumed,
        seed_s,
        limit_s: limit.as_secs_f64(),
        limit_events_s: limit_events,
        sweep_s,
        sweep_no_events_s: sweep_no_events,
        sweep_wall_s: wall,
        rss_mib: rss,
    }
}

struct ProviderRow {
    backend: Backend,
    n: i64,
    sweep_s: f64,
    queried: i64,
    closed: i64,
    rss_mib: f64,
}

/// The sweep with every overdue order's payment open at WeChat Pay's double, which answers
/// each call after `delay_ms`: asked, closed, cancelled.
async fn bench_provider(
    backend: Backend,
    n: i64,
    args: &Args,
    dir: &std::path::Path,
) -> ProviderRow {
    let admin = std::env::var("ORDO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = "ordo_bench_sweep_provider";
    let url = url_of(backend, &admin, dir, name);
    match backend {
        Backend::Sqlite => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(dir.join(format!("{name}.db{suffix}")));
            }
        }
        Backend::Postgres => {
            common::fresh_pg_database(name).await;
        }
    }
    let db = Db::connect(&url, 1).await.expect("connect");
    db.migrate().await.expect("migrate");
    db.close().await;
    let now = chrono::Utc::now().timestamp_millis();
    let mut sql = seed_sql(backend, n, now - 24 * 3_600_000, true);
    let yes = if backend == Backend::Postgres {
        "TRUE"
    } else {
        "1"
    };
    // WeChat Pay takes yuan: the orders (and the console's time totals of them) in CNY.
    sql.push("UPDATE orders SET currency = 'CNY'".to_owned());
    sql.push("UPDATE order_time_totals SET currency = 'CNY'".to_owned());
    sql.push(format!(
        "UPDATE payments SET provider = 'wechatpay', method = 'wechatpay_jsapi',
                merchant_ref = 'BENCH' || CAST(id AS TEXT), provider_ref = 'BENCH' || CAST(id AS TEXT),
                provider_open = {yes}, provider_state = 'NOTPAY'"
    ));
    execute_all(&url, &sql).await;

    // The double, on a runtime of its own: the sweep's process is waited for on this one.
    let (tx, rx) = std::sync::mpsc::channel();
    let delay = Duration::from_millis(args.provider_delay_ms);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let double = doubles::wechatpay::WechatPayDouble::start(ordo::Clock::system()).await;
            double.set_delay(delay);
            tx.send(double).expect("send the double");
            std::future::pending::<()>().await;
        });
    });
    let double = rx.recv().expect("the double");
    for id in 1..=n {
        double.insert(&format!("BENCH{id}"), 100, "http://127.0.0.1:9/notify");
    }
    let keys = dir.join("provider-keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    let mut env: Vec<(String, String)> = double
        .settings(&keys)
        .into_iter()
        .map(|(k, v)| (format!("ORDO_{}", k.to_ascii_uppercase()), v))
        .collect();
    env.push(("ORDO_PUBLIC_URL".into(), "http://127.0.0.1:9".into()));
    env.push((
        "ORDO_PROVIDER_CONCURRENCY".into(),
        args.provider_concurrency.to_string(),
    ));
    // SAFETY: set before the child is spawned; this benchmark runs one sweep at a time.
    unsafe {
        std::env::set_var("ORDO_EVENTS", "true");
        for (k, v) in &env {
            std::env::set_var(k, v);
        }
    }
    let batch = args.batch_size.to_string();
    let (_, rss_kib, stdout, code) = run_measured(
        env!("CARGO_BIN_EXE_ordo"),
        &[
            "--database-url",
            &url,
            "cancel-unpaid-orders",
            "--json",
            "--batch-size",
            &batch,
        ],
    );
    // SAFETY: as above.
    unsafe {
        for (k, _) in &env {
            std::env::remove_var(k);
        }
    }
    assert_eq!(code, 0, "sweep failed: {stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("json summary");
    assert_eq!(summary["cancelled"].as_i64(), Some(n), "{summary}");
    assert_eq!(summary["deferred"].as_i64(), Some(0), "{summary}");
    assert!(
        double.txns().iter().all(|t| t.state == "CLOSED"),
        "every transaction closed at the double"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["--database-url", &url, "check"])
        .env("ORDO_LOG", "warn")
        .output()
        .expect("ordo check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    ProviderRow {
        backend,
        n,
        sweep_s: summary["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        queried: summary["queried"].as_i64().unwrap_or(0),
        closed: summary["closed"].as_i64().unwrap_or(0),
        rss_mib: rss_kib as f64 / 1024.0,
    }
}

fn provider_main(args: &Args) {
    let temp = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bound =
        f64::from(args.provider_concurrency) / (2.0 * args.provider_delay_ms as f64 / 1000.0);
    let mut rows = Vec::new();
    for &backend in &args.backends {
        for &n in &args.sizes {
            eprintln!("{backend:?}: {n} overdue orders open at WeChat Pay...");
            let row = rt.block_on(bench_provider(backend, n, args, temp.path()));
            eprintln!(
                "{backend:?} {n}: {:.2} s, {:.0} orders/s, peak RSS {:.1} MiB",
                row.sweep_s,
                n as f64 / row.sweep_s,
                row.rss_mib
            );
            rows.push(row);
        }
    }
    println!(
        "| database | overdue orders | sweep (s) | orders/s | bound (orders/s) | rate / bound | provider calls | closed | peak RSS (MiB) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut short = false;
    for r in &rows {
        let rate = r.n as f64 / r.sweep_s;
        short |= rate / bound < 0.8;
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {:.2} | {} | {} | {:.1} |",
            match r.backend {
                Backend::Sqlite => "SQLite",
                Backend::Postgres => "PostgreSQL",
            },
            r.n,
            r.sweep_s,
            rate,
            bound,
            rate / bound,
            r.queried + r.closed,
            r.closed,
            r.rss_mib
        );
    }
    println!(
        "\nWeChat Pay double answering after {} ms; provider_concurrency {}; bound = concurrency / (2 x delay)",
        args.provider_delay_ms, args.provider_concurrency
    );
    if short {
        eprintln!("a sweep ran below 0.8 of the bound");
        std::process::exit(1);
    }
}

fn main() {
    let args = parse_args();
    if args.provider {
        provider_main(&args);
        return;
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();
    if std::env::var("ORDO_BENCH_KEEP").is_ok() {
        eprintln!("keeping SQLite databases in {}", temp.keep().display());
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    for &backend in &args.backends {
        for &n in &args.sizes {
            // The full comparison at the smaller sizes; at the largest, the sweep and the
            // limit alone (memory stays flat).
            let variants = n <= 100_000;
            for &vacuumed in &args.states {
                if !vacuumed && (backend == Backend::Sqlite || !variants) {
                    continue;
                }
                eprintln!("{backend:?}: seeding {n} overdue orders (vacuumed: {vacuumed})...");
                let row = rt.block_on(bench_one(
                    backend,
                    n,
                    args.batch_size,
                    vacuumed,
                    variants,
                    &dir,
                ));
                eprintln!(
                    "{backend:?} {n}: sweep {:.2} s, limit {:.2} s, peak RSS {:.1} MiB",
                    row.sweep_s, row.limit_s, row.rss_mib
                );
                rows.push(row);
            }
        }
    }
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_owned(), f);
    println!(
        "| database | overdue orders | state | sweep (s) | sweep orders/s | limit (s) | sweep / limit | limit with events (s) | sweep / limit with events | sweep without events (s) | sweep without events / limit | with / without events | wall incl. start-up (s) | peak RSS (MiB) |"
    );
    println!(
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &rows {
        let rate = r.n as f64 / r.sweep_s;
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {:.2} | {:.1} |",
            match r.backend {
                Backend::Sqlite => "SQLite",
                Backend::Postgres => "PostgreSQL",
            },
            r.n,
            if r.vacuumed {
                "after VACUUM ANALYZE"
            } else {
                "just written"
            },
            r.sweep_s,
            rate,
            r.limit_s,
            r.limit_s / r.sweep_s,
            opt(r.limit_events_s, &|s| format!("{s:.2}")),
            opt(r.limit_events_s, &|s| format!("{:.2}", s / r.sweep_s)),
            opt(r.sweep_no_events_s, &|s| format!("{s:.2}")),
            opt(r.sweep_no_events_s, &|s| format!("{:.2}", r.limit_s / s)),
            opt(r.sweep_no_events_s, &|s| format!("{:.2}", s / r.sweep_s)),
            r.sweep_wall_s,
            r.rss_mib,
        );
    }
    println!(
        "\nbatch size {}; {} products, one item per order; seeding {}",
        args.batch_size,
        PRODUCTS,
        rows.iter()
            .map(|r| format!("{:.1} s", r.seed_s))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
