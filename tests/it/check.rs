//! `ordo check` finds what it promises to find: for every check, a shop is corrupted in the
//! one way that check guards against, and `ordo check` (the command an operator runs) must
//! exit 1 naming that check and no other. RELIABILITY.md lists the checks with these
//! corruptions.

use crate::helpers::{Backend, TestShop};
use crate::on_both_databases;
use std::collections::BTreeSet;
use std::process::{Command, Output};

on_both_databases!(check_reports_each_broken_invariant);

/// The shop every corruption starts from: one product, a pending, a paid and a cancelled
/// order of one unit each.
struct Shop {
    shop: TestShop,
    product: i64,
    pending: i64,
    paid: i64,
    cancelled: i64,
}

async fn shop(backend: Backend) -> Shop {
    let shop = TestShop::new(backend).await;
    let product = shop.product(10, 100).await.id;
    let pending = shop.order(&[(product, 1)]).await.order.order.id;
    let paid = shop.order(&[(product, 1)]).await;
    shop.pay(&paid).await;
    let cancelled = shop.order(&[(product, 1)]).await.order.order.id;
    shop.ordo
        .cancel_order(shop.owner(), cancelled, None)
        .await
        .expect("cancel");
    Shop {
        shop,
        product,
        pending,
        paid: paid.order.order.id,
        cancelled,
    }
}

/// Each check, and the statements that break what it guards (and nothing else it could
/// see); `{product}`, `{pending}`, `{paid}` and `{cancelled}` name the shop's rows.
const CORRUPTIONS: &[(&str, &[&str])] = &[
    (
        "ledger_equals_stock",
        // A unit appears on the shelf without a ledger row.
        &["UPDATE products SET stock = stock + 1 WHERE id = {product}"],
    ),
    (
        "stock_not_negative",
        // Stock below zero, its ledger agreeing (the CHECK constraint bypassed: see below).
        &[
            "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, created_at)
             SELECT id, NULL, -stock - 1, 'adjust', 'test', 0 FROM products WHERE id = {product}",
            "UPDATE products SET stock = -1 WHERE id = {product}",
        ],
    ),
    (
        "status_has_history",
        // The paid order marked shipped without a history row.
        &["UPDATE orders SET status = 'shipped' WHERE id = {paid}"],
    ),
    (
        "history_is_a_chain",
        // A move that starts from a status the order was not in.
        &[
            "UPDATE order_status_history SET from_status = 'refunding'
             WHERE order_id = {paid} AND to_status = 'paid'",
        ],
    ),
    (
        "no_pending_order_with_succeeded_payment",
        &["UPDATE payments SET status = 'succeeded' WHERE order_id = {pending}"],
    ),
    (
        "no_open_payment_on_settled_order",
        &["UPDATE payments SET status = 'pending' WHERE order_id = {paid}"],
    ),
    (
        "cancelled_order_money_flagged_for_refund",
        // Money taken for the cancelled order, not flagged to go back.
        &["UPDATE payments SET status = 'succeeded', refund_required = FALSE WHERE order_id = {cancelled}"],
    ),
    (
        "late_provider_payment_has_refund",
        // Money a provider took for the cancelled order, flagged, but no refund asked of it.
        &[
            "UPDATE payments SET provider = 'wechatpay', status = 'succeeded', refund_required = TRUE
             WHERE order_id = {cancelled}",
        ],
    ),
    (
        "order_stock_reserved_and_released_once",
        // The cancelled order's unit never went back: its release row gone, the shelf
        // one unit short (so that the ledger still equals the stock).
        &[
            "DELETE FROM stock_movements WHERE order_id = {cancelled} AND reason = 'release'",
            "UPDATE products SET stock = stock - 1 WHERE id = {product}",
        ],
    ),
    (
        "order_events_numbered",
        // The pending order's last event renumbered past the order's counter: a gap.
        &[
            "UPDATE events SET seq = seq + 1
             WHERE order_id = {pending} AND seq = (SELECT event_seq FROM orders WHERE id = {pending})",
        ],
    ),
    (
        "state_changes_have_events",
        // The payment's event never written (and never numbered).
        &[
            "DELETE FROM events WHERE order_id = {paid} AND type = 'order.paid'",
            "UPDATE orders SET event_seq = event_seq - 1 WHERE id = {paid}",
        ],
    ),
    (
        "deliveries_name_endpoint_and_event",
        // A delivery to an endpoint that does not exist (PostgreSQL has no foreign key
        // there; SQLite's is switched off for the statement: see below).
        &[
            "INSERT INTO webhook_deliveries (endpoint_id, event_pk, status, attempts, next_attempt_at, created_at, updated_at)
             VALUES (999, (SELECT MIN(id) FROM events), 'pending', 0, 0, 0, 0)",
        ],
    ),
    (
        "order_has_items",
        &["DELETE FROM order_items WHERE order_id = {pending}"],
    ),
    (
        "status_counters_match_orders",
        &["UPDATE order_status_counts SET n = n + 1 WHERE status = 'pending'"],
    ),
    (
        "time_totals_match_orders",
        &["UPDATE order_time_totals SET placed = placed + 1"],
    ),
    (
        "order_items_keep_sku_and_name",
        // A line that forgot what it was sold as.
        &["UPDATE order_items SET name = NULL WHERE order_id = {pending}"],
    ),
    (
        "erased_customers_hold_no_personal_data",
        // A customer marked erased whose name and phone are still there.
        &["UPDATE users SET phone = '138 0013 8000', erased_at = created_at WHERE role = 'customer'"],
    ),
    (
        "history_follows_lifecycle",
        // The paid order went straight from pending to completed: history and status agree,
        // but the lifecycle has no such move.
        &[
            "UPDATE order_status_history SET to_status = 'completed'
             WHERE order_id = {paid} AND to_status = 'paid'",
            "UPDATE orders SET status = 'completed' WHERE id = {paid}",
        ],
    ),
];

fn ordo_check(url: &str, json: bool) -> Output {
    let mut args = vec!["check"];
    if json {
        args.push("--json");
    }
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env("ORDO_DATABASE_URL", url)
        .env("ORDO_LOG", "warn")
        .env_remove("ORDO_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ordo check")
}

async fn check_reports_each_broken_invariant(backend: Backend) {
    let report = shop(backend).await.shop.ordo.check().await.unwrap();
    let listed: BTreeSet<&str> = CORRUPTIONS.iter().map(|(check, _)| *check).collect();
    let run: BTreeSet<&str> = report.checks.iter().copied().collect();
    assert_eq!(
        listed, run,
        "every check of `ordo check` has its corruption here, and no other"
    );

    // Every corruption is tried, and every one that is not reported as it should be is
    // named in the failure.
    let mut failures = Vec::new();
    for (check, statements) in CORRUPTIONS {
        if let Err(failure) = corrupt_and_check(backend, check, statements).await {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Corrupts a fresh shop with `statements` and runs `ordo check` on it.
async fn corrupt_and_check(
    backend: Backend,
    check: &str,
    statements: &[&str],
) -> Result<(), String> {
    let s = shop(backend).await;
    let clean = ordo_check(&s.shop.database.url, false);
    if clean.status.code() != Some(0) {
        return Err(format!(
            "{check}: not clean before the corruption: {}",
            String::from_utf8_lossy(&clean.stdout)
        ));
    }

    let mut conn = s.shop.ordo.db.pool().acquire().await.unwrap();
    // The corruptions the schema itself refuses: lift the refusal on this connection
    // (SQLite) or in this throwaway database (PostgreSQL).
    let lift = match (check, backend) {
        ("stock_not_negative", Backend::Sqlite) => Some("PRAGMA ignore_check_constraints = ON"),
        ("stock_not_negative", Backend::Postgres) => {
            Some("ALTER TABLE products DROP CONSTRAINT products_stock_not_negative")
        }
        ("deliveries_name_endpoint_and_event", Backend::Sqlite) => {
            Some("PRAGMA foreign_keys = OFF")
        }
        _ => None,
    };
    if let Some(sql) = lift {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
    for sql in statements {
        let sql = sql
            .replace("{product}", &s.product.to_string())
            .replace("{pending}", &s.pending.to_string())
            .replace("{paid}", &s.paid.to_string())
            .replace("{cancelled}", &s.cancelled.to_string());
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{check}: {sql}: {e}"));
        assert!(done.rows_affected() > 0, "{check}: {sql} changed nothing");
    }
    if backend == Backend::Sqlite {
        for sql in [
            "PRAGMA ignore_check_constraints = OFF",
            "PRAGMA foreign_keys = ON",
        ] {
            sqlx::query(sql).execute(&mut *conn).await.unwrap();
        }
    }
    drop(conn);

    let out = ordo_check(&s.shop.database.url, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{check}: not JSON ({e}): {stdout}"))?;
    let found: BTreeSet<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["check"].as_str().expect("a check name"))
        .collect();
    if out.status.code() != Some(1) || found != BTreeSet::from([check]) {
        return Err(format!(
            "{check}: ordo check exited {:?} with findings of {found:?}, not 1 with {check}'s alone: {stdout}",
            out.status.code()
        ));
    }
    // As an operator reads it: the finding's line, then the count.
    let out = ordo_check(&s.shop.database.url, false);
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(1)
        || !text.lines().any(|l| l.starts_with(&format!("{check}: ")))
        || !text.trim_end().ends_with("finding(s)")
    {
        return Err(format!("{check}: as text: {text}"));
    }
    Ok(())
}
