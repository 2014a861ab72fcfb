//! Races with real connections: many tasks at once, then the invariants.

use crate::helpers::{Backend, TestShop};
use crate::on_both_databases;
use ordo::Error;
use ordo::domain::{OrderStatus, PaymentStatus, ProviderEvent, ProviderStatus};
use ordo::payments::EventOutcome;
use std::sync::Arc;

on_both_databases!(
    fifty_orders_for_twenty_units,
    cancel_and_payment_race_on_one_order,
    adjustments_race_with_orders,
    multi_item_orders_in_opposite_orders_do_not_deadlock,
);

async fn fifty_orders_for_twenty_units(backend: Backend) {
    let shop = TestShop::with_pool(backend, 20).await;
    let shop = Arc::new(shop);
    let p = shop.product(20, 100).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let shop = shop.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                shop.ordo
                    .place_order(shop.owner(), &shop.new_order(&[(p.id, 1)]))
                    .await
            })
        })
        .collect();
    let (mut placed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => placed += 1,
            Err(Error::InsufficientStock { available, .. }) => {
                assert_eq!(available, 0);
                refused += 1;
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((placed, refused), (20, 30));
    assert_eq!(shop.stock(p.id).await, 0);
    assert_eq!(shop.ledger_sum(p.id).await, 0);
    assert_eq!(shop.count("SELECT COUNT(*) FROM orders").await, 20);
    shop.assert_check_clean().await;
}

async fn cancel_and_payment_race_on_one_order(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let shop = Arc::new(shop);
    // At least 40 rounds, and on until each side has won once (a round's winner is up to
    // the scheduler and the database; at most 400 rounds).
    let most = 400;
    let p = shop.product(most, 100).await;
    let (mut paid_won, mut cancel_won) = (0, 0);
    let mut rounds = 0;
    for round in 0..most {
        if round >= 40 && paid_won > 0 && cancel_won > 0 {
            break;
        }
        rounds += 1;
        let placed = shop.order(&[(p.id, 1)]).await;
        let id = placed.order.order.id;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let cancel = {
            let (shop, barrier) = (shop.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                shop.ordo.cancel_order(shop.owner(), id, None).await
            })
        };
        let pay = {
            let (shop, barrier) = (shop.clone(), barrier.clone());
            let payment = placed.payment.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                shop.ordo
                    .apply_provider_event(&ProviderEvent {
                        event_id: format!("race-{round}"),
                        payment_id: payment.id,
                        status: ProviderStatus::Succeeded,
                        amount_cents: payment.amount_cents,
                    })
                    .await
            })
        };
        let cancel = cancel.await.expect("task");
        let pay = pay
            .await
            .expect("task")
            .expect("payment event is always recorded");
        let details = shop.ordo.order(shop.staff(), id).await.unwrap();
        let moves = shop.moves(id).await;
        match (cancel, pay) {
            (Ok(_), EventOutcome::RefundRequired) => {
                cancel_won += 1;
                assert_eq!(details.order.status, OrderStatus::Cancelled);
                assert_eq!(details.payments[0].status, PaymentStatus::Succeeded);
                assert!(details.payments[0].refund_required);
                assert_eq!(moves, ["none->pending", "pending->cancelled"]);
            }
            (Err(Error::InvalidTransition { from, .. }), EventOutcome::Paid) => {
                // The owner may not cancel a paid order: the table refuses it.
                paid_won += 1;
                assert_eq!(from, OrderStatus::Paid);
                assert_eq!(details.order.status, OrderStatus::Paid);
                assert!(!details.payments[0].refund_required);
                assert_eq!(moves, ["none->pending", "pending->paid"]);
            }
            (Err(Error::Forbidden { .. }), EventOutcome::Paid) => {
                paid_won += 1;
                assert_eq!(details.order.status, OrderStatus::Paid);
                assert_eq!(moves, ["none->pending", "pending->paid"]);
            }
            (cancel, pay) => panic!("round {round}: both or neither won: {cancel:?} / {pay:?}"),
        }
        let releases = shop
            .scalar(
                "SELECT COUNT(*) FROM stock_movements WHERE order_id = $1 AND reason = 'release'",
                id,
            )
            .await;
        assert!(releases <= 1, "stock released at most once");
    }
    assert_eq!(paid_won + cancel_won, rounds);
    // The race went both ways: each side won at least once.
    assert!(
        paid_won > 0 && cancel_won > 0,
        "{rounds} rounds: the payment won {paid_won}, the cancel {cancel_won}"
    );
    let cancelled = shop
        .count("SELECT COUNT(*) FROM orders WHERE status = 'cancelled'")
        .await;
    assert_eq!(
        shop.stock(p.id).await,
        most - rounds + cancelled,
        "released exactly the cancelled units"
    );
    shop.assert_check_clean().await;
}

async fn adjustments_race_with_orders(backend: Backend) {
    let shop = TestShop::with_pool(backend, 20).await;
    let shop = Arc::new(shop);
    let p = shop.product(10, 100).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (shop, barrier) = (shop.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            if i % 2 == 0 {
                shop.ordo
                    .place_order(shop.owner(), &shop.new_order(&[(p.id, 1)]))
                    .await
                    .map(|_| -1)
            } else {
                let delta = if i % 4 == 1 { -1 } else { 1 };
                shop.ordo
                    .adjust_stock(shop.staff(), p.id, delta, None)
                    .await
                    .map(|_| delta)
            }
        }));
    }
    let mut net = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(delta) => net += delta,
            Err(Error::InsufficientStock { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    let stock = shop.stock(p.id).await;
    assert!(stock >= 0);
    assert_eq!(stock, 10 + net);
    assert_eq!(shop.ledger_sum(p.id).await, stock);
    shop.assert_check_clean().await;
}

async fn multi_item_orders_in_opposite_orders_do_not_deadlock(backend: Backend) {
    let shop = TestShop::with_pool(backend, 20).await;
    let shop = Arc::new(shop);
    let a = shop.product(1000, 100).await;
    let b = shop.product(1000, 100).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let shop = shop.clone();
        tasks.push(tokio::spawn(async move {
            let items = if i % 2 == 0 {
                [(a.id, 1), (b.id, 2)]
            } else {
                [(b.id, 2), (a.id, 1)]
            };
            let placed = shop
                .ordo
                .place_order(shop.owner(), &shop.new_order(&items))
                .await?;
            if i % 3 == 0 {
                shop.ordo
                    .cancel_order(shop.owner(), placed.order.order.id, None)
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("no deadlock, no failure");
    }
    let cancelled = 20;
    assert_eq!(shop.stock(a.id).await, 1000 - (60 - cancelled));
    assert_eq!(shop.stock(b.id).await, 1000 - 2 * (60 - cancelled));
    shop.assert_check_clean().await;
}
