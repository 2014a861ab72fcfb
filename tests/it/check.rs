//! `ordo check` finds what it promises to find.

use crate::helpers::{Backend, TestShop};
use crate::on_both_databases;

on_both_databases!(check_reports_each_broken_invariant);

async fn check_reports_each_broken_invariant(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 100).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    shop.assert_check_clean().await;

    let pool = shop.ordo.db.pool();
    let breakages: [(&str, &str); 4] = [
        (
            "ledger_equals_stock",
            "UPDATE products SET stock = stock + 1",
        ),
        ("status_has_history", "UPDATE orders SET status = 'shipped'"),
        (
            "no_pending_order_with_succeeded_payment",
            "UPDATE payments SET status = 'succeeded'",
        ),
        (
            "order_stock_reserved_and_released_once",
            "DELETE FROM stock_movements WHERE reason = 'reserve'",
        ),
    ];
    for (check, sql) in breakages {
        let before = shop.snapshot().await;
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
        // Look from inside the transaction, then roll it back.
        let found = {
            let rows = sqlx::query("SELECT 1").fetch_all(&mut *tx).await.unwrap();
            assert_eq!(rows.len(), 1);
            tx.commit().await.unwrap();
            let report = shop.ordo.check().await.unwrap();
            report.findings.iter().any(|f| f.check == check)
        };
        assert!(found, "{check} not reported after {sql}");
        restore(&shop, &before, id, p.id).await;
        shop.assert_check_clean().await;
    }
}

/// Undoes each breakage (test-only repairs).
async fn restore(shop: &TestShop, _before: &str, order_id: i64, product_id: i64) {
    let pool = shop.ordo.db.pool();
    let fixes = [
        "UPDATE orders SET status = 'pending'",
        "UPDATE payments SET status = 'pending'",
    ];
    for sql in fixes {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    let reserves = shop
        .scalar(
            "SELECT COUNT(*) FROM stock_movements WHERE order_id = $1 AND reason = 'reserve'",
            order_id,
        )
        .await;
    if reserves == 0 {
        sqlx::query(
            "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, created_at)
             VALUES ($1, $2, -1, 'reserve', 'test', 0)",
        )
        .bind(product_id)
        .bind(order_id)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE products SET stock = 4")
        .execute(pool)
        .await
        .unwrap();
}

on_both_databases!(check_reports_a_delivery_naming_nothing);

/// PostgreSQL has no foreign keys on deliveries (they made every placement share-lock the
/// endpoint row): the check stands in for them.
async fn check_reports_a_delivery_naming_nothing(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 100).await;
    shop.order(&[(p.id, 1)]).await;
    shop.assert_check_clean().await;
    let mut conn = shop.ordo.db.pool().acquire().await.unwrap();
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_pk, status, attempts, next_attempt_at, created_at, updated_at)
         VALUES (999, (SELECT MIN(id) FROM events), 'pending', 0, 0, 0, 0)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    drop(conn);
    let report = shop.ordo.check().await.unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == "deliveries_name_endpoint_and_event"),
        "{:#?}",
        report.findings
    );
}
