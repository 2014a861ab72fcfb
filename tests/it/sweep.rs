//! The unpaid-order sweep on both databases: effects, payment awareness, dry runs, limits,
//! per-order isolation, the CLI, and sweeps racing each other and payments.

use crate::helpers::{Backend, MINUTE, T0, TestShop};
use crate::on_both_databases;
use ordo::domain::{OrderStatus, PaymentStatus, ProviderEvent, ProviderStatus};
use ordo::payments::EventOutcome;
use ordo::sweep::{OrderOutcome, SweepRequest, SweepSummary};
use ordo::{Clock, Db, Ordo, Policy};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

on_both_databases!(
    sweep_cancels_with_the_transition_effects,
    dry_run_changes_nothing_and_says_would_cancel,
    sweep_is_payment_aware,
    one_bad_order_fails_alone,
    limit_and_batches,
    cli_now_json_and_exit_codes,
    concurrent_sweeps_and_payments_never_overlap,
    sweep_and_per_order_path_have_the_same_effects,
    tables_without_statistics_are_analyzed_once,
);

fn request(dry_run: bool) -> SweepRequest {
    SweepRequest {
        timeout_minutes: 30,
        dry_run,
        batch_size: 1000,
        limit: None,
        now: None,
    }
}

async fn sweep(shop: &TestShop, request: &SweepRequest) -> SweepSummary {
    shop.ordo
        .cancel_unpaid_orders(request, &AtomicBool::new(false), |_, _| {})
        .await
}

async fn sweep_cancels_with_the_transition_effects(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let a = shop.product(10, 100).await;
    let b = shop.product(10, 100).await;
    let due = shop.order(&[(a.id, 2), (b.id, 1)]).await;
    let due_id = due.order.order.id;
    shop.ordo.clock.advance(20 * MINUTE);
    let young = shop.order(&[(a.id, 1)]).await;
    shop.ordo.clock.set(T0 + 31 * MINUTE);

    let summary = sweep(&shop, &request(false)).await;
    assert_eq!(
        (
            summary.found,
            summary.cancelled,
            summary.skipped,
            summary.errors
        ),
        (1, 1, 0, 0)
    );
    assert_eq!(summary.units_released, 3);
    assert_eq!(summary.cutoff, "2026-11-25T09:01:00.000Z");

    let details = shop.ordo.order(shop.staff(), due_id).await.unwrap();
    assert_eq!(details.order.status, OrderStatus::Cancelled);
    assert_eq!(details.order.cancelled_at, Some(T0 + 31 * MINUTE));
    assert_eq!(
        details.order.cancel_reason.as_deref(),
        Some("payment timeout")
    );
    assert_eq!(details.payments[0].status, PaymentStatus::Expired);
    let history = shop.history(due_id).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].from_status.as_deref(), Some("pending"));
    assert_eq!(history[1].to_status, "cancelled");
    assert_eq!(history[1].actor, "system:expiry");
    assert_eq!(history[1].note.as_deref(), Some("payment timeout"));
    let releases = shop
        .scalar(
            "SELECT COUNT(*) FROM stock_movements WHERE order_id = $1 AND reason = 'release' AND actor = 'system:expiry'",
            due_id,
        )
        .await;
    assert_eq!(releases, 2);
    assert_eq!((shop.stock(a.id).await, shop.stock(b.id).await), (9, 10));
    assert_eq!(
        shop.status(young.order.order.id).await,
        OrderStatus::Pending
    );

    // Idempotent: a second run finds nothing and changes nothing.
    let before = shop.snapshot().await;
    let again = sweep(&shop, &request(false)).await;
    assert_eq!((again.found, again.cancelled), (0, 0));
    assert_eq!(shop.snapshot().await, before);
    shop.assert_check_clean().await;
}

async fn dry_run_changes_nothing_and_says_would_cancel(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(50, 100).await;
    for _ in 0..7 {
        shop.order(&[(p.id, 2)]).await;
    }
    shop.ordo.clock.set(T0 + 45 * MINUTE);
    let before = shop.snapshot().await;
    let mut seen = Vec::new();
    let summary = shop
        .ordo
        .cancel_unpaid_orders(
            &SweepRequest {
                batch_size: 3,
                ..request(true)
            },
            &AtomicBool::new(false),
            |order, outcome| seen.push((order.id, outcome.clone())),
        )
        .await;
    assert_eq!(shop.snapshot().await, before, "a dry run changes nothing");
    assert!(summary.dry_run);
    assert_eq!(
        (summary.found, summary.would_cancel, summary.cancelled),
        (7, 7, 0)
    );
    assert_eq!(summary.units_released, 0);
    assert_eq!(seen.len(), 7);
    assert!(seen.iter().all(|(_, o)| *o == OrderOutcome::WouldCancel));

    let before_except_runs = shop.snapshot_except(&["sweep_runs", "audit_log"]).await;
    let audited = shop.count("SELECT COUNT(*) FROM audit_log").await;
    let out = run_cli(
        &shop,
        &[
            "cancel-unpaid-orders",
            "--dry-run",
            "--now",
            "2026-11-25T09:45:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("would cancel 7"), "{stdout}");
    assert!(!stdout.to_lowercase().contains("cancelled 7"), "{stdout}");
    assert!(stdout.contains("dry run: yes"), "{stdout}");
    // The run itself is recorded (every run is, SPEC section 12) and audited; nothing else
    // changed.
    assert_eq!(
        shop.snapshot_except(&["sweep_runs", "audit_log"]).await,
        before_except_runs
    );
    let runs: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT trigger, CASE WHEN dry_run THEN 1 ELSE 0 END, state, would_cancel FROM sweep_runs",
    )
    .fetch_all(shop.ordo.db.pool())
    .await
    .unwrap();
    assert_eq!(runs, [("cli".to_owned(), 1, "finished".to_owned(), 7)]);
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM audit_log WHERE action = 'sweep.run'")
            .await,
        1
    );
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM audit_log").await,
        audited + 1
    );
}

async fn sweep_is_payment_aware(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(50, 100).await;
    // Payments live 60 minutes here, longer than the 30 minute unpaid timeout.
    let long_payments = Ordo::new(
        shop.ordo.db.clone(),
        Policy {
            payment_ttl_ms: 60 * MINUTE,
            unpaid_timeout_ms: 30 * MINUTE,
            ..shop.ordo.policy
        },
        shop.ordo.clock.clone(),
    );
    let open = long_payments
        .place_order(shop.owner(), &shop.new_order(&[(p.id, 1)]))
        .await
        .unwrap();
    let expired = shop.order(&[(p.id, 1)]).await;
    let paid = shop.order(&[(p.id, 1)]).await;
    shop.pay(&paid).await;
    shop.ordo.clock.set(T0 + 40 * MINUTE);

    let summary = sweep(&shop, &request(false)).await;
    assert_eq!((summary.found, summary.cancelled), (1, 1));
    assert_eq!(shop.status(open.order.order.id).await, OrderStatus::Pending);
    assert_eq!(
        shop.status(expired.order.order.id).await,
        OrderStatus::Cancelled
    );
    assert_eq!(shop.status(paid.order.order.id).await, OrderStatus::Paid);
    let payments = shop
        .ordo
        .order(shop.staff(), expired.order.order.id)
        .await
        .unwrap()
        .payments;
    assert_eq!(payments[0].status, PaymentStatus::Expired);
    let payments = shop
        .ordo
        .order(shop.staff(), open.order.order.id)
        .await
        .unwrap()
        .payments;
    assert_eq!(payments[0].status, PaymentStatus::Pending);

    // Once the open payment expires, the order is due.
    shop.ordo.clock.set(T0 + 61 * MINUTE);
    let summary = sweep(&shop, &request(false)).await;
    assert_eq!((summary.found, summary.cancelled), (1, 1));
    assert_eq!(
        shop.status(open.order.order.id).await,
        OrderStatus::Cancelled
    );
    assert_eq!(shop.stock(p.id).await, 49);
    shop.assert_check_clean().await;
}

/// Plants a release row for `order_id` so that releasing it again violates the unique
/// index: a realistic stand-in for one corrupt order.
async fn break_order(shop: &TestShop, order_id: i64, product_id: i64) {
    sqlx::query(
        "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, created_at)
         VALUES ($1, $2, 1, 'release', 'test', 0)",
    )
    .bind(product_id)
    .bind(order_id)
    .execute(shop.ordo.db.pool())
    .await
    .unwrap();
}

async fn mend_order(shop: &TestShop, order_id: i64) {
    sqlx::query("DELETE FROM stock_movements WHERE order_id = $1 AND actor = 'test'")
        .bind(order_id)
        .execute(shop.ordo.db.pool())
        .await
        .unwrap();
}

async fn one_bad_order_fails_alone(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(50, 100).await;
    let mut ids = Vec::new();
    for _ in 0..9 {
        ids.push(shop.order(&[(p.id, 1)]).await.order.order.id);
    }
    let bad = ids[4];
    break_order(&shop, bad, p.id).await;
    shop.ordo.clock.set(T0 + 31 * MINUTE);

    let summary = sweep(
        &shop,
        &SweepRequest {
            batch_size: 4,
            ..request(false)
        },
    )
    .await;
    assert_eq!(
        (summary.found, summary.cancelled, summary.errors),
        (9, 8, 1)
    );
    assert_eq!(summary.failures.len(), 1);
    assert_eq!(summary.failures[0].order_id, bad);
    assert_eq!(summary.units_released, 8);
    for &id in &ids {
        let expected = if id == bad {
            OrderStatus::Pending
        } else {
            OrderStatus::Cancelled
        };
        assert_eq!(shop.status(id).await, expected);
    }
    // The bad order is reported again by the CLI, with exit status 1.
    let out = run_cli(
        &shop,
        &["cancel-unpaid-orders", "--now", "2026-11-25T09:31:00Z"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("failed: order {bad}")));

    mend_order(&shop, bad).await;
    let summary = sweep(&shop, &request(false)).await;
    assert_eq!((summary.cancelled, summary.errors), (1, 0));
    assert_eq!(shop.stock(p.id).await, 50);
    shop.assert_check_clean().await;
}

async fn limit_and_batches(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(100, 100).await;
    // Each order a second older than the one placed before it: age order is the reverse of
    // id order, so a sweep that went by id would take the youngest.
    let mut by_age = Vec::new();
    for i in 0..25 {
        shop.ordo.clock.set(T0 + (25 - i) * 1000);
        by_age.push(shop.order(&[(p.id, 1)]).await.order.order.id);
    }
    by_age.reverse();
    shop.ordo.clock.set(T0 + 31 * MINUTE);
    let limited = sweep(
        &shop,
        &SweepRequest {
            batch_size: 3,
            limit: Some(10),
            ..request(false)
        },
    )
    .await;
    assert_eq!((limited.found, limited.cancelled), (10, 10));
    let pending = shop
        .count("SELECT COUNT(*) FROM orders WHERE status = 'pending'")
        .await;
    assert_eq!(pending, 15);
    let cancelled: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE status = 'cancelled' ORDER BY created_at, id",
    )
    .fetch_all(shop.ordo.db.pool())
    .await
    .unwrap();
    assert_eq!(cancelled, by_age[..10], "oldest orders go first");

    let rest = sweep(
        &shop,
        &SweepRequest {
            batch_size: 7,
            ..request(false)
        },
    )
    .await;
    assert_eq!((rest.found, rest.cancelled), (15, 15));
    assert_eq!(shop.stock(p.id).await, 100);
    shop.assert_check_clean().await;
}

fn run_cli(shop: &TestShop, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env("ORDO_DATABASE_URL", &shop.database.url)
        .env("ORDO_LOG", "warn")
        .env_remove("ORDO_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ordo")
}

async fn cli_now_json_and_exit_codes(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(10, 100).await;
    shop.order(&[(p.id, 3)]).await;

    // Ten minutes in, nothing is due.
    let out = run_cli(
        &shop,
        &[
            "cancel-unpaid-orders",
            "--now",
            "2026-11-25T09:10:00Z",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(json["found"], 0);

    // Past the payment's expiry, a longer timeout still spares it...
    let out = run_cli(
        &shop,
        &[
            "cancel-unpaid-orders",
            "--now",
            "2026-11-25T09:35:00Z",
            "--timeout-minutes",
            "40",
            "--json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(json["found"], 0);
    // ...and the default one takes it.
    let out = run_cli(
        &shop,
        &[
            "cancel-unpaid-orders",
            "--now",
            "2026-11-25T09:35:00Z",
            "--json",
            "-v",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    for key in [
        "dry_run",
        "timeout_minutes",
        "cutoff",
        "found",
        "cancelled",
        "would_cancel",
        "skipped",
        "errors",
        "units_released",
        "duration_ms",
    ] {
        assert!(json.get(key).is_some(), "summary lacks {key}: {json}");
    }
    assert_eq!(json["cancelled"], 1);
    assert_eq!(json["units_released"], 3);
    assert_eq!(json["timeout_minutes"], 30);
    assert_eq!(json["cutoff"], "2026-11-25T09:05:00.000Z");
    // -v lines go to stderr when stdout carries JSON.
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled: order"));

    for bad in [
        vec!["cancel-unpaid-orders", "--timeout-minutes", "-5"],
        vec!["cancel-unpaid-orders", "--batch-size", "0"],
        vec!["cancel-unpaid-orders", "--limit", "0"],
        vec!["cancel-unpaid-orders", "--now", "tomorrow"],
    ] {
        let out = run_cli(&shop, &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    // Nothing left: exits 0 cleanly, as cron wants.
    let out = run_cli(
        &shop,
        &["cancel-unpaid-orders", "--now", "2026-11-25T12:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(0));
    shop.assert_check_clean().await;
}

/// Several sweeps (own pools, like separate processes) at once over overdue orders while
/// payment successes arrive for some of them.
pub async fn race_sweeps_and_payments(backend: Backend, orders: usize, sweeps: usize) {
    let shop = Arc::new(TestShop::with_pool(backend, 16).await);
    let products: Vec<i64> = {
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(shop.product(orders as i64, 100).await.id);
        }
        ids
    };
    // Place the orders from 16 tasks.
    let mut placing = Vec::new();
    for t in 0..16 {
        let shop = shop.clone();
        let products = products.clone();
        placing.push(tokio::spawn(async move {
            let mut placed = Vec::new();
            for i in (t..orders).step_by(16) {
                let item = (products[i % products.len()], 1 + (i % 3) as i64);
                placed.push(shop.order(&[item]).await);
            }
            placed
        }));
    }
    let mut placed = Vec::new();
    for task in placing {
        placed.extend(task.await.unwrap());
    }
    shop.ordo.clock.set(T0 + 31 * MINUTE);

    // The sweeps and the payers start together.
    let payers = 8;
    let go = Arc::new(tokio::sync::Barrier::new(sweeps + payers + 1));
    let mut sweepers = Vec::new();
    for _ in 0..sweeps {
        let db = Db::connect(&shop.database.url, 4).await.unwrap();
        let ordo = Ordo::new(db, Policy::default(), Clock::fixed(T0 + 31 * MINUTE));
        let go = go.clone();
        sweepers.push(tokio::spawn(async move {
            go.wait().await;
            let summary = ordo
                .cancel_unpaid_orders(
                    &SweepRequest {
                        batch_size: 100,
                        ..request(false)
                    },
                    &AtomicBool::new(false),
                    |_, _| {},
                )
                .await;
            ordo.db.close().await;
            summary
        }));
    }
    // Every fifth order's payment succeeds while the sweeps run: eight payers, youngest
    // orders first (the sweeps go oldest first), so some payments win and some come late;
    // both must happen.
    let to_pay: Vec<_> = placed
        .iter()
        .rev()
        .step_by(5)
        .map(|p| p.payment.clone())
        .collect();
    let payers: Vec<_> = (0..payers)
        .map(|k| {
            let (shop, go) = (shop.clone(), go.clone());
            let mine: Vec<_> = to_pay.iter().skip(k).step_by(payers).cloned().collect();
            tokio::spawn(async move {
                go.wait().await;
                let mut outcomes = Vec::new();
                for payment in mine {
                    let outcome = shop
                        .ordo
                        .apply_provider_event(&ProviderEvent {
                            event_id: format!("race-{}", payment.id),
                            payment_id: payment.id,
                            status: ProviderStatus::Succeeded,
                            amount_cents: payment.amount_cents,
                        })
                        .await
                        .expect("payment event");
                    outcomes.push((payment.order_id, outcome));
                }
                outcomes
            })
        })
        .collect();
    go.wait().await;
    let mut cancelled_by_sweeps = 0;
    let mut cancelled_per_sweep = Vec::new();
    for s in sweepers {
        let summary = s.await.unwrap();
        assert_eq!(summary.errors, 0, "{summary:?}");
        cancelled_by_sweeps += summary.cancelled;
        cancelled_per_sweep.push(summary.cancelled);
    }
    let mut outcomes = Vec::new();
    for payer in payers {
        outcomes.extend(payer.await.unwrap());
    }

    let cancelled = shop
        .count("SELECT COUNT(*) FROM orders WHERE status = 'cancelled'")
        .await;
    let paid = shop
        .count("SELECT COUNT(*) FROM orders WHERE status = 'paid'")
        .await;
    assert_eq!(
        cancelled + paid,
        orders as i64,
        "every order ends paid or cancelled"
    );
    assert_eq!(cancelled_by_sweeps as i64, cancelled, "sweep counts add up");
    let paid_events = outcomes
        .iter()
        .filter(|(_, o)| *o == EventOutcome::Paid)
        .count();
    let late = outcomes
        .iter()
        .filter(|(_, o)| *o == EventOutcome::RefundRequired)
        .count();
    assert_eq!(paid_events + late, outcomes.len());
    assert_eq!(
        paid_events as i64, paid,
        "an order is paid only by its payment"
    );
    eprintln!(
        "{backend:?}: {orders} orders, {sweeps} sweeps: {cancelled} cancelled ({cancelled_per_sweep:?}), {paid} paid in time, {late} paid late"
    );
    assert!(
        paid_events > 0 && late > 0,
        "the payments raced the sweeps: {paid_events} in time, {late} late"
    );
    // On PostgreSQL the sweeps claim batches past each other's locks (SKIP LOCKED) and
    // share the work; SQLite runs one writer at a time, and one sweep may take it all.
    if backend == Backend::Postgres {
        assert!(
            cancelled_per_sweep.iter().filter(|c| **c > 0).count() >= 2,
            "the sweeps raced each other: cancelled {cancelled_per_sweep:?}"
        );
    }

    let refunds = shop
        .count("SELECT COUNT(*) FROM payments WHERE refund_required")
        .await;
    assert_eq!(refunds, late as i64, "late payments kept for refund");
    // Never both: no paid order was touched by the sweep, no cancelled order was paid.
    let both = shop
        .count(
            "SELECT COUNT(*) FROM orders o WHERE EXISTS (SELECT 1 FROM order_status_history h
               WHERE h.order_id = o.id AND h.to_status = 'paid')
             AND EXISTS (SELECT 1 FROM order_status_history h
               WHERE h.order_id = o.id AND h.to_status = 'cancelled')",
        )
        .await;
    assert_eq!(both, 0);
    let double_release = shop
        .count(
            "SELECT COUNT(*) FROM (SELECT order_id, product_id FROM stock_movements
               WHERE reason = 'release' GROUP BY order_id, product_id HAVING COUNT(*) > 1) d",
        )
        .await;
    assert_eq!(double_release, 0);
    for &p in &products {
        assert_eq!(shop.stock(p).await, shop.ledger_sum(p).await);
    }
    shop.assert_check_clean().await;
}

async fn concurrent_sweeps_and_payments_never_overlap(backend: Backend) {
    race_sweeps_and_payments(backend, 1_000, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_sweeps_over_twenty_thousand_orders_on_postgres() {
    if crate::helpers::postgres_url().is_some() {
        race_sweeps_and_payments(Backend::Postgres, 20_000, 4).await;
    }
}

/// The batch path and the one-order-at-a-time fallback leave the same rows behind.
async fn sweep_and_per_order_path_have_the_same_effects(backend: Backend) {
    async fn run(backend: Backend, break_one: bool) -> String {
        let shop = TestShop::new(backend).await;
        let a = shop.product(20, 100).await;
        let b = shop.product(20, 100).await;
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(shop.order(&[(a.id, 1 + i), (b.id, 2)]).await.order.order.id);
        }
        if break_one {
            // Force the batch to fail, so every order goes the per-order way; the broken
            // order is mended by the time its turn comes... so break a fifth, extra order.
            let extra = shop.order(&[(a.id, 1)]).await.order.order.id;
            break_order(&shop, extra, a.id).await;
        } else {
            shop.order(&[(a.id, 1)]).await;
        }
        shop.ordo.clock.set(T0 + 31 * MINUTE);
        let summary = sweep(&shop, &request(false)).await;
        assert_eq!(summary.cancelled, 4 + u64::from(!break_one));
        // Compare the first four orders' rows without ids that differ by design.
        let mut rows = String::new();
        for id in ids {
            let d = shop.ordo.order(shop.staff(), id).await.unwrap();
            rows.push_str(&format!(
                "{:?} {:?} {:?} {:?}\n",
                d.order.status,
                d.order.cancelled_at,
                d.order.cancel_reason,
                d.payments.iter().map(|p| p.status).collect::<Vec<_>>()
            ));
            rows.push_str(&format!("{:?}\n", shop.history(id).await));
            let moves = shop
                .ordo
                .stock_movements(shop.staff(), a.id, None, 100)
                .await
                .unwrap();
            let mine: Vec<_> = moves
                .iter()
                .filter(|m| m.order_id == Some(id))
                .map(|m| (m.delta, m.reason.clone(), m.actor.clone(), m.note.clone()))
                .collect();
            rows.push_str(&format!("{mine:?}\n"));
        }
        rows.push_str(&format!(
            "stock {} {}\n",
            shop.stock(a.id).await,
            shop.stock(b.id).await
        ));
        rows
    }
    let batched = run(backend, false).await;
    let one_by_one = run(backend, true).await;
    // The broken extra order keeps one more unit of `a` away; everything else matches.
    let strip_stock = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("stock"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_stock(&batched), strip_stock(&one_by_one));
}

/// The tables a sweep's batches read get planner statistics when they have none, once;
/// SQLite needs none.
async fn tables_without_statistics_are_analyzed_once(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(10, 100).await;
    shop.order(&[(p.id, 1)]).await;
    let db = &shop.ordo.db;
    let mut conn = db.pool().acquire().await.unwrap();
    let analyze = async |conn: &mut sqlx::AnyConnection, min_rows| {
        ordo::db::sweep::analyze_if_never_analyzed(conn, db.dialect(), min_rows)
            .await
            .unwrap()
    };
    match backend {
        Backend::Postgres => {
            // A new database: nothing was ever analyzed, and three tiny tables are not
            // worth it.
            assert!(analyze(&mut conn, 10_000).await.is_empty());
            assert_eq!(
                analyze(&mut conn, 0).await,
                ["order_items", "orders", "payments"]
            );
            assert!(analyze(&mut conn, 0).await.is_empty(), "analyzed once");
            // The activity counters start afresh in a copy of the database (or after a
            // reset); the statistics themselves are still there.
            sqlx::query("SELECT pg_stat_reset()")
                .execute(&mut *conn)
                .await
                .unwrap();
            assert!(analyze(&mut conn, 0).await.is_empty(), "still analyzed");
            // Nor does the server JIT-compile a batch whose estimate looks large.
            let jit: String = sqlx::query_scalar("SELECT current_setting('jit')")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(jit, "off");
        }
        Backend::Sqlite => assert!(analyze(&mut conn, 0).await.is_empty()),
    }
}
