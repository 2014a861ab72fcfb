//! Flash sales: 2,000 buyers at once for 100 units of one product, with idempotent retries
//! mixed in. Exactly 100 orders, the rest refused, stock 0, the ledger exact, one order per
//! key; through one process (the combiner), two `ordo serve` on one PostgreSQL, and a
//! server SIGKILLed again and again during the sale.

use crate::helpers::{Backend, TestShop};
use crate::on_both_databases;
use ordo::domain::{Actor, NewOrder};
use ordo::{Error, Ordo, Policy};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUYERS: i64 = 2000;
const UNITS: i64 = 100;

on_both_databases!(
    two_thousand_buyers_for_a_hundred_units,
    a_sale_survives_sigkill
);

/// The sale's end state: exactly `sold` orders hold the product, stock is what is left,
/// the ledger is exact, each key gave at most one order.
async fn assert_sold(shop: &TestShop, product: i64, sold: i64) {
    assert_eq!(
        shop.scalar(
            "SELECT COUNT(*) FROM order_items WHERE product_id = $1",
            product
        )
        .await,
        sold
    );
    assert_eq!(shop.stock(product).await, UNITS - sold);
    assert_eq!(shop.ledger_sum(product).await, UNITS - sold);
    assert_eq!(
        shop.count(
            "SELECT COUNT(*) FROM (SELECT order_id FROM idempotency_keys WHERE order_id IS NOT NULL
             GROUP BY order_id HAVING COUNT(*) > 1) twice"
        )
        .await,
        0,
        "an order under two keys"
    );
    shop.assert_check_clean().await;
}

async fn two_thousand_buyers_for_a_hundred_units(backend: Backend) {
    let shop = TestShop::new(backend).await;
    // The shop's real limits (5 unpaid orders, 100 units) apply.
    let ordo = Ordo::new(
        shop.ordo.db.clone(),
        Policy {
            webhook_allow_private: true,
            ..Policy::default()
        },
        shop.ordo.clock.clone(),
    );
    let p = shop.product(UNITS, 999).await;
    let buyers = crate::seed::customers(&shop, BUYERS).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, (user, _)) in buyers.iter().enumerate() {
        // Every tenth buyer sends the same request twice at once (a retry racing the first).
        let copies = if i % 10 == 0 { 2 } else { 1 };
        for _ in 0..copies {
            let (ordo, user) = (ordo.clone(), *user);
            let new = NewOrder::from_lines(user, &[(p.id, 1)], None);
            let key = format!("sale-{user}");
            tasks.push(tokio::spawn(async move {
                let placed = ordo
                    .place_order_once(Actor::Customer(user), &new, Some(&key))
                    .await;
                (key, placed.map(|(p, _)| p.order.order.id))
            }));
        }
    }
    let mut placed: HashMap<String, HashSet<i64>> = HashMap::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (key, Ok(id)) => {
                placed.entry(key).or_default().insert(id);
            }
            (_, Err(Error::InsufficientStock { available, .. })) => {
                assert_eq!(available, 0);
                refused += 1;
            }
            (_, Err(other)) => panic!("{other:?}"),
        }
    }
    eprintln!(
        "flash sale {backend:?}: {} buyers ({} requests) in {:?}",
        BUYERS,
        BUYERS + BUYERS / 10,
        started.elapsed()
    );
    assert!(
        placed.values().all(|ids| ids.len() == 1),
        "one key, one order"
    );
    assert_eq!(placed.len() as i64, UNITS, "exactly the units there were");
    assert!(refused >= BUYERS - UNITS);
    assert_sold(&shop, p.id, UNITS).await;
}

/// Buys once over HTTP with `key`, retrying (with the same key, alternately on each server)
/// while the answer is lost or 503. `None`: refused for want of stock.
async fn buy(
    client: &reqwest::Client,
    bases: &[String],
    token: &str,
    product: i64,
    key: &str,
    until: Instant,
) -> Option<Option<i64>> {
    for attempt in 0.. {
        if Instant::now() > until {
            return None;
        }
        let base = &bases[attempt % bases.len()];
        let sent = client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"items": [{"product_id": product, "quantity": 1}]}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 201 || r.status() == 200 => {
                let body: serde_json::Value = r.json().await.unwrap();
                return Some(Some(body["order"]["id"].as_i64().unwrap()));
            }
            Ok(r) if r.status() == 409 => {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["code"], "insufficient_stock", "{body}");
                return Some(None);
            }
            Ok(r) if r.status() == 503 => {}
            Ok(r) => panic!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_through_two_servers_on_postgres() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let shop = TestShop::new(Backend::Postgres).await;
    let p = shop.product(UNITS, 999).await;
    let buyers = crate::seed::customers(&shop, BUYERS).await;
    let (mut a, base_a) = crate::service::serve(&shop, &[]).await;
    let (mut b, base_b) = crate::service::serve(&shop, &[]).await;
    let client = crate::helpers::client_builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::new();
    for (i, (user, token)) in buyers.into_iter().enumerate() {
        let copies = if i % 10 == 0 { 2 } else { 1 };
        for copy in 0..copies {
            // The copies go to different servers first.
            let bases = if (i + copy) % 2 == 0 {
                vec![base_a.clone(), base_b.clone()]
            } else {
                vec![base_b.clone(), base_a.clone()]
            };
            let (client, token, sem) = (client.clone(), token.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = sem.acquire().await.unwrap();
                let key = format!("sale-{user}");
                let got = buy(&client, &bases, &token, p.id, &key, until).await;
                (key, got.expect("answered"))
            }));
        }
    }
    let mut placed: HashMap<String, HashSet<i64>> = HashMap::new();
    for t in tasks {
        if let (key, Some(id)) = t.await.unwrap() {
            placed.entry(key).or_default().insert(id);
        }
    }
    for server in [&mut a, &mut b] {
        let _ = server.kill();
        let _ = server.wait();
    }
    assert!(
        placed.values().all(|ids| ids.len() == 1),
        "one key, one order"
    );
    assert_eq!(placed.len() as i64, UNITS);
    assert_sold(&shop, p.id, UNITS).await;
}

async fn a_sale_survives_sigkill(backend: Backend) {
    let shop = Arc::new(TestShop::new(backend).await);
    let p = shop.product(UNITS, 999).await;
    // 150 buyers arriving 30 ms apart for 100 units: the sale lasts about three seconds, and
    // the server is killed six times in the meantime.
    const SALE_BUYERS: u64 = 150;
    let buyers = crate::seed::customers(&shop, SALE_BUYERS as i64).await;
    let (server, base) = crate::service::serve(&shop, &[]).await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let server = Arc::new(Mutex::new(Some(server)));
    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let refused: Arc<Mutex<u64>> = Arc::default();
    let client = crate::helpers::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(90);
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for (i, (user, token)) in buyers.into_iter().enumerate() {
        let (client, base, acked, refused, sem) = (
            client.clone(),
            base.clone(),
            acked.clone(),
            refused.clone(),
            sem.clone(),
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i as u64 * 30)).await;
            let _slot = sem.acquire().await.unwrap();
            let key = format!("sale-{user}");
            // Every buyer retries until answered: an order, or a refusal for want of stock.
            match buy(&client, &[base], &token, p.id, &key, until).await {
                Some(Some(id)) => {
                    acked.lock().unwrap().insert(key, id);
                }
                Some(None) => *refused.lock().unwrap() += 1,
                None => panic!("buyer {key} was never answered"),
            }
        }));
    }
    // SIGKILL the server again and again during the sale, restarting it on the same port.
    let killer = {
        let (server, shop) = (server.clone(), shop.clone());
        tokio::spawn(async move {
            let mut kills = 0;
            for pause in [300u64, 700, 450, 900, 350, 600] {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                if let Some(mut child) = server.lock().unwrap().take() {
                    // The server must still be running: this kill is the crash, not one
                    // the server had by itself.
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!("ordo serve exited by itself ({status}) during the sale");
                    }
                    child.kill().unwrap();
                    let _ = child.wait();
                    kills += 1;
                }
                let (child, _) = crate::service::serve_on(&shop, &port, &[]).await;
                *server.lock().unwrap() = Some(child);
            }
            kills
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    let kills = killer.await.unwrap();
    if let Some(mut child) = server.lock().unwrap().take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(kills >= 3, "the server was killed during the sale");
    // Every acknowledged order exists, under its key; nothing was oversold.
    let acked = acked.lock().unwrap().clone();
    for (key, id) in &acked {
        let status = shop.ordo.order(shop.staff(), *id).await;
        assert!(status.is_ok(), "acknowledged order {id} ({key}) is gone");
    }
    let sold = shop
        .scalar(
            "SELECT COUNT(*) FROM order_items WHERE product_id = $1",
            p.id,
        )
        .await;
    // Every buyer was answered, so the sale sold exactly the stock, each order to the
    // buyer it was acknowledged to, and refused the rest.
    let refused = *refused.lock().unwrap();
    assert_eq!(
        (sold, acked.len() as i64, refused),
        (UNITS, UNITS, SALE_BUYERS - UNITS as u64),
        "sold, acknowledged, refused"
    );
    let last_order = shop.count("SELECT MAX(created_at) FROM orders").await;
    let first_order = shop.count("SELECT MIN(created_at) FROM orders").await;
    assert!(
        last_order - first_order > 1500,
        "the sale lasted through the kills"
    );
    assert_sold(&shop, p.id, sold).await;
    eprintln!(
        "flash sale with {kills} SIGKILLs ({backend:?}): {} acknowledged, {sold} sold",
        acked.len()
    );
}
