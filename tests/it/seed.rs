//! Seeding many orders fast, set-based, as the benchmarks do: `n` unpaid orders of one
//! unit each over a few products, each with its payment, ledger row, history row and
//! `order.created` event, consistent for `ordo check`.

use crate::helpers::{Backend, TestShop};

/// Seeds `n` pending orders of the shop's customer, created at `created_at` + i ms, with
/// payments that expired; returns the products' ids.
pub async fn due_orders(shop: &TestShop, backend: Backend, n: i64, created_at: i64) -> Vec<i64> {
    const PRODUCTS: i64 = 10;
    let pool = shop.ordo.db.pool();
    let first_product: i64 = shop
        .count("SELECT COALESCE(MAX(id), 0) + 1 FROM products")
        .await;
    let first_order: i64 = shop
        .count("SELECT COALESCE(MAX(id), 0) + 1 FROM orders")
        .await;
    let first_payment: i64 = shop
        .count("SELECT COALESCE(MAX(id), 0) + 1 FROM payments")
        .await;
    let customer = shop.customer.id;
    let series = |count: i64, body: &str| match backend {
        Backend::Postgres => format!("{body} FROM generate_series(0, {count} - 1) AS g(x)"),
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM g WHERE x < {count} - 1) {body} FROM g"
        ),
    };
    let yes = if backend == Backend::Postgres {
        "TRUE"
    } else {
        "1"
    };
    let no = if backend == Backend::Postgres {
        "FALSE"
    } else {
        "0"
    };
    let product = format!("({first_product} + (x % {PRODUCTS}))");
    let order = format!("({first_order} + x)");
    let stock = n / PRODUCTS + 10;
    let statements = vec![
        series(PRODUCTS, &format!(
            "INSERT INTO products (id, sku, name, price_cents, currency, stock, sales_count, active, created_at, updated_at)
             SELECT {first_product} + x, 'SEED-' || ({first_product} + x), 'Seeded', 100, 'EUR', {stock}, 0, {yes}, 0, 0"
        )),
        format!(
            "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
             SELECT id, NULL, stock, 'adjust', 'cli', 'opening stock', 0 FROM products WHERE id >= {first_product}"
        ),
        series(n, &format!(
            "INSERT INTO orders (id, number, user_id, status, total_cents, currency, created_at, updated_at, event_seq)
             SELECT {order}, 'ORD-SEED-' || {order}, {customer}, 'pending', 100, 'EUR', {created_at} + x, {created_at} + x, 1"
        )),
        series(n, &format!(
            "INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_cents)
             SELECT {order}, {product}, 'SEED-' || {product}, 'Seeded', 1, 100"
        )),
        series(n, &format!(
            "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
             SELECT {product}, {order}, -1, 'reserve', 'user:{customer}', NULL, {created_at} + x"
        )),
        series(n, &format!(
            "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
             SELECT {order}, NULL, 'pending', 'user:{customer}', NULL, {created_at} + x"
        )),
        series(n, &format!(
            "INSERT INTO events (event_id, type, order_id, product_id, seq, data, created_at)
             SELECT 'evt_seed' || {order}, 'order.created', {order}, NULL, 1, '{{}}', {created_at} + x"
        )),
        series(n, &format!(
            "INSERT INTO payments (id, order_id, amount_cents, method, status, expires_at, provider_ref, refund_required, created_at, updated_at)
             SELECT {first_payment} + x, {order}, 100, 'card', 'pending', {created_at} + x + 60000, NULL, {no}, {created_at} + x, {created_at} + x"
        )),
        format!(
            "UPDATE products SET stock = stock - (SELECT COUNT(*) FROM order_items WHERE product_id = products.id)
             WHERE id >= {first_product}"
        ),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    if backend == Backend::Postgres {
        for table in ["products", "orders", "payments", "events"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            )))
            .execute(pool)
            .await
            .expect("setval");
        }
    }
    (first_product..first_product + PRODUCTS).collect()
}

/// `n` customers with tokens, made in two statements; returns (user id, token).
pub async fn customers(shop: &TestShop, n: i64) -> Vec<(i64, String)> {
    let pool = shop.ordo.db.pool();
    let first: i64 = shop
        .count("SELECT COALESCE(MAX(id), 0) + 1 FROM users")
        .await;
    let rows: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let token = format!("ordo_buyer_{}_{}", first + i, rand::random::<u64>());
            serde_json::json!({"id": first + i, "name": format!("buyer {i}"), "token": token,
                "hash": ordo::auth::token_hash(&token)})
        })
        .collect();
    let json = serde_json::to_string(&rows).unwrap();
    let dialect = shop.ordo.db.dialect();
    let from = |cols: &[(&str, &str)]| dialect.json_rows(1, cols);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, name, role, created_at) SELECT r.id, r.name, 'customer', 0 FROM {}",
        from(&[("id", "bigint"), ("name", "text")])
    )))
    .bind(&json)
    .execute(pool)
    .await
    .expect("users");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at) SELECT r.id, r.name, r.hash, 0 FROM {}",
        from(&[("id", "bigint"), ("name", "text"), ("hash", "text")])
    )))
    .bind(&json)
    .execute(pool)
    .await
    .expect("tokens");
    if dialect == ordo::db::Dialect::Postgres {
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT MAX(id) FROM users))",
        )
        .execute(pool)
        .await
        .expect("setval");
    }
    rows.into_iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["token"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
