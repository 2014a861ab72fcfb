//! `ordo check`: verifies the invariants that must hold whatever happened (README: Commands).
//! Each check is one query; a finding names the row and what is wrong with it.

use crate::Ordo;
use crate::domain::OrderStatus;
use crate::domain::lifecycle;
use crate::error::Result;
use serde::Serialize;
use sqlx::Row;

/// Details shown per check at most; the count is always exact.
const SHOWN: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<&'static str>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// (name, query); each row returned is a violation, described by its columns.
const CHECKS: &[(&str, &str)] = &[
    (
        "ledger_equals_stock",
        "SELECT p.id, p.sku, p.stock, CAST(COALESCE(SUM(m.delta), 0) AS BIGINT) AS ledger
         FROM products p LEFT JOIN stock_movements m ON m.product_id = p.id
         GROUP BY p.id, p.sku, p.stock HAVING p.stock <> COALESCE(SUM(m.delta), 0)",
    ),
    (
        "stock_not_negative",
        "SELECT id, sku, stock FROM products WHERE stock < 0 OR sales_count < 0",
    ),
    (
        "status_has_history",
        "SELECT o.id, o.status, h.to_status AS last_history
         FROM orders o LEFT JOIN order_status_history h
           ON h.id = (SELECT MAX(x.id) FROM order_status_history x WHERE x.order_id = o.id)
         WHERE h.to_status IS NULL OR h.to_status <> o.status",
    ),
    (
        "history_is_a_chain",
        "SELECT order_id, id, from_status, previous FROM (
           SELECT order_id, id, from_status,
                  LAG(to_status) OVER (PARTITION BY order_id ORDER BY id) AS previous
           FROM order_status_history) h
         WHERE (previous IS NULL AND from_status IS NOT NULL)
            OR (previous IS NOT NULL AND (from_status IS NULL OR from_status <> previous))",
    ),
    (
        "no_pending_order_with_succeeded_payment",
        "SELECT o.id, p.id AS payment_id FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE o.status = 'pending' AND p.status = 'succeeded'",
    ),
    (
        "no_open_payment_on_settled_order",
        "SELECT o.id, o.status, p.id AS payment_id FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE o.status <> 'pending' AND p.status = 'pending'",
    ),
    (
        "order_stock_reserved_and_released_once",
        "SELECT o.id, o.status, CAST(COALESCE(m.net, 0) AS BIGINT) AS ledger_net, CAST(i.units AS BIGINT) AS units
         FROM orders o
         JOIN (SELECT order_id, SUM(quantity) AS units FROM order_items GROUP BY order_id) i
           ON i.order_id = o.id
         LEFT JOIN (SELECT order_id, SUM(delta) AS net FROM stock_movements
                    WHERE order_id IS NOT NULL GROUP BY order_id) m ON m.order_id = o.id
         WHERE COALESCE(m.net, 0) <> CASE WHEN o.status IN ('cancelled', 'refunded') THEN 0 ELSE -i.units END",
    ),
    (
        "order_events_numbered",
        "SELECT o.id, o.event_seq, CAST(COUNT(e.id) AS BIGINT) AS events, CAST(MAX(e.seq) AS BIGINT) AS last_seq
         FROM orders o JOIN events e ON e.order_id = o.id
         GROUP BY o.id, o.event_seq
         HAVING COUNT(e.id) <> o.event_seq OR MAX(e.seq) <> o.event_seq OR MIN(e.seq) <> 1",
    ),
    (
        "state_changes_have_events",
        "SELECT o.id, h.changes, e.events FROM orders o
         JOIN (SELECT order_id, COUNT(*) AS changes FROM order_status_history GROUP BY order_id) h
           ON h.order_id = o.id
         JOIN (SELECT order_id, COUNT(*) AS events FROM events
               WHERE type IN ('order.created', 'order.paid', 'order.expired', 'order.cancelled',
                              'order.shipped', 'order.completed', 'order.refund_requested',
                              'order.refunded', 'order.refund_rejected')
               GROUP BY order_id) e
           ON e.order_id = o.id
         WHERE h.changes <> e.events",
    ),
    (
        "deliveries_name_endpoint_and_event",
        "SELECT d.id, d.endpoint_id, d.event_pk FROM webhook_deliveries d
         WHERE NOT EXISTS (SELECT 1 FROM webhook_endpoints ep WHERE ep.id = d.endpoint_id)
            OR NOT EXISTS (SELECT 1 FROM events ev WHERE ev.id = d.event_pk)",
    ),
    (
        "cancelled_order_money_flagged_for_refund",
        "SELECT o.id, p.id AS payment_id, p.provider FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE o.status = 'cancelled' AND p.status = 'succeeded' AND NOT p.refund_required",
    ),
    (
        "order_has_items",
        "SELECT o.id FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)",
    ),
    (
        "status_counters_match_orders",
        "SELECT status, CAST(SUM(counted) AS BIGINT) AS counted, CAST(SUM(actual) AS BIGINT) AS actual FROM (
           SELECT status, n AS counted, 0 AS actual FROM order_status_counts
           UNION ALL
           SELECT status, 0, COUNT(*) FROM orders GROUP BY status
         ) c GROUP BY status HAVING SUM(counted) <> SUM(actual)",
    ),
    (
        "time_totals_match_orders",
        "SELECT quarter, currency, CAST(SUM(placed) AS BIGINT) AS placed, CAST(SUM(placed_actual) AS BIGINT) AS placed_actual,
                CAST(SUM(paid_cents) AS BIGINT) AS paid_cents, CAST(SUM(paid_cents_actual) AS BIGINT) AS paid_cents_actual
         FROM (
           SELECT quarter, currency, placed, 0 AS placed_actual, paid, 0 AS paid_actual, paid_cents, 0 AS paid_cents_actual
           FROM order_time_totals
           UNION ALL
           SELECT created_at / 900000, currency, 0, 1, 0, 0, 0, 0 FROM orders
           UNION ALL
           SELECT paid_at / 900000, currency, 0, 0, 0, 1, 0, total_cents FROM orders WHERE paid_at IS NOT NULL
         ) d GROUP BY quarter, currency
         HAVING SUM(placed) <> SUM(placed_actual) OR SUM(paid) <> SUM(paid_actual)
             OR SUM(paid_cents) <> SUM(paid_cents_actual)",
    ),
    (
        "order_items_keep_sku_and_name",
        "SELECT order_id, product_id FROM order_items
         WHERE sku IS NULL OR name IS NULL OR sku = '' OR name = ''",
    ),
    (
        "erased_customers_hold_no_personal_data",
        "SELECT u.id AS customer_id, o.id AS order_id FROM users u
         JOIN orders o ON o.user_id = u.id
         WHERE u.erased_at IS NOT NULL AND o.created_at <= u.erased_at
           AND o.shipping_address IS NOT NULL AND o.shipping_address NOT LIKE '%\"erased\":true%'
         UNION ALL
         SELECT u.id, NULL FROM users u
         WHERE u.erased_at IS NOT NULL
           AND (u.phone IS NOT NULL OR u.phone_digits IS NOT NULL OR u.wechat_openid IS NOT NULL
                OR u.name <> '[erased]')",
    ),
];

fn describe(row: &sqlx::any::AnyRow) -> String {
    use sqlx::Column;
    row.columns()
        .iter()
        .map(|c| {
            let name = c.name();
            let value = row
                .try_get::<Option<i64>, _>(c.ordinal())
                .map(|v| v.map_or("null".to_owned(), |v| v.to_string()))
                .or_else(|_| {
                    row.try_get::<Option<String>, _>(c.ordinal())
                        .map(|v| v.unwrap_or_else(|| "null".to_owned()))
                })
                .unwrap_or_else(|_| "?".to_owned());
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Ordo {
    pub async fn check(&self) -> Result<Report> {
        let mut conn = self.db.pool().acquire().await?;
        let mut report = Report::default();
        for (name, sql) in CHECKS {
            report.checks.push(name);
            let rows = sqlx::query(*sql).fetch_all(&mut *conn).await?;
            let total = rows.len();
            for row in rows.iter().take(SHOWN) {
                report.findings.push(Finding {
                    check: name,
                    detail: describe(row),
                });
            }
            if total > SHOWN {
                report.findings.push(Finding {
                    check: name,
                    detail: format!("... and {} more", total - SHOWN),
                });
            }
        }
        // Money a provider took for an order that no longer wanted it goes back through that
        // provider by itself: such a payment has its refund under way, done, or refused (and
        // shown to staff).
        if self.policy.auto_refund_late_payments {
            let name = "late_provider_payment_has_refund";
            report.checks.push(name);
            let rows = sqlx::query(
                "SELECT id AS payment_id, order_id, provider FROM payments
                 WHERE status = 'succeeded' AND refund_required AND provider <> 'manual'
                   AND refund_state IS NULL",
            )
            .fetch_all(&mut *conn)
            .await?;
            for row in rows.iter().take(SHOWN) {
                report.findings.push(Finding {
                    check: name,
                    detail: describe(row),
                });
            }
        }
        // Every recorded move must be one the lifecycle allows.
        report.checks.push("history_follows_lifecycle");
        let moves = sqlx::query("SELECT DISTINCT from_status, to_status FROM order_status_history")
            .fetch_all(&mut *conn)
            .await?;
        for row in moves {
            let from: Option<String> = row.try_get(0)?;
            let to: String = row.try_get(1)?;
            let to_status = to.parse::<OrderStatus>().ok();
            let allowed = match (from.as_deref(), to_status) {
                (None, Some(OrderStatus::Pending)) => true,
                (Some(f), Some(t)) => f
                    .parse::<OrderStatus>()
                    .is_ok_and(|f| lifecycle::OrderStatus::can_move_to(f, t)),
                _ => false,
            };
            if !allowed {
                report.findings.push(Finding {
                    check: "history_follows_lifecycle",
                    detail: format!(
                        "move {} -> {to} is not in the lifecycle",
                        from.as_deref().unwrap_or("(none)")
                    ),
                });
            }
        }
        Ok(report)
    }
}
