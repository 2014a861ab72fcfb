//! Placing orders: reservation, ledger, first payment, history; all or nothing.

use crate::helpers::{Backend, MINUTE, T0, TestShop};
use crate::on_both_databases;
use ordo::Error;
use ordo::domain::{OrderStatus, PaymentStatus, ProductPatch};

on_both_databases!(
    placing_reserves_stock_and_opens_a_payment,
    short_second_item_leaves_no_trace,
    unknown_inactive_and_mixed_currency_products_are_refused,
    bad_orders_are_validated_before_touching_the_database,
    customers_order_for_themselves_only,
);

async fn placing_reserves_stock_and_opens_a_payment(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let a = shop.product(10, 1_250).await;
    let b = shop.product(3, 99).await;
    let placed = shop.order(&[(b.id, 1), (a.id, 2), (b.id, 1)]).await;
    let order = &placed.order.order;
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.total_cents, 2 * 1_250 + 2 * 99);
    assert_eq!(order.currency, "EUR");
    assert!(order.number.starts_with("ORD-"));
    assert_eq!(
        placed.order.items.len(),
        2,
        "repeated products fold into one line"
    );
    assert_eq!(placed.order.items[0].product_id, a.id.min(b.id));
    assert_eq!((shop.stock(a.id).await, shop.stock(b.id).await), (8, 1));
    assert_eq!(shop.ledger_sum(a.id).await, 8);
    assert_eq!(shop.ledger_sum(b.id).await, 1);
    let reserves = shop
        .scalar(
            "SELECT COUNT(*) FROM stock_movements WHERE order_id = $1 AND reason = 'reserve'",
            order.id,
        )
        .await;
    assert_eq!(reserves, 2);
    assert_eq!(placed.payment.status, PaymentStatus::Pending);
    assert_eq!(placed.payment.amount_cents, order.total_cents);
    assert_eq!(placed.payment.expires_at, T0 + 30 * MINUTE);
    assert_eq!(shop.moves(order.id).await, ["none->pending"]);
    // Prices are snapshots: a later price change leaves the order alone.
    shop.ordo
        .update_product(
            shop.staff(),
            a.id,
            &ProductPatch {
                price_cents: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let details = shop.ordo.order(shop.owner(), order.id).await.unwrap();
    assert_eq!(details.items[0].unit_price_cents, 1_250);
    assert_eq!(details.order.total_cents, order.total_cents);
    shop.assert_check_clean().await;
}

async fn short_second_item_leaves_no_trace(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let first = shop.product(10, 100).await;
    let second = shop.product(2, 100).await;
    let before = shop.snapshot().await;
    let err = shop
        .ordo
        .place_order(
            shop.owner(),
            &shop.new_order(&[(first.id, 4), (second.id, 3)]),
        )
        .await
        .expect_err("second item is short");
    match err {
        Error::InsufficientStock {
            product_id,
            requested,
            available,
            ref sku,
        } => {
            assert_eq!((product_id, requested, available), (second.id, 3, 2));
            assert_eq!(sku, &second.sku);
            assert!(err.to_string().contains("available 2"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        shop.snapshot().await,
        before,
        "no order, no ledger rows, stock unchanged"
    );
    assert_eq!(shop.stock(first.id).await, 10);
    assert_eq!(shop.count("SELECT COUNT(*) FROM orders").await, 0);
    shop.assert_check_clean().await;
}

async fn unknown_inactive_and_mixed_currency_products_are_refused(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let on_sale = shop.product(5, 100).await;
    let retired = shop.product(5, 100).await;
    shop.ordo
        .update_product(
            shop.staff(),
            retired.id,
            &ProductPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dollars = shop
        .ordo
        .create_product(
            shop.staff(),
            &ordo::domain::NewProduct {
                sku: "USD-ONE".into(),
                name: "Priced in dollars".into(),
                price_cents: 100,
                currency: "USD".into(),
                stock: 5,
            },
        )
        .await
        .unwrap();
    let before = shop.snapshot().await;
    for items in [
        vec![(on_sale.id, 1), (999_999, 1)],
        vec![(on_sale.id, 1), (retired.id, 1)],
        vec![(on_sale.id, 1), (dollars.id, 1)],
    ] {
        let err = shop
            .ordo
            .place_order(shop.owner(), &shop.new_order(&items))
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::Validation { .. }),
            "{items:?}: {err:?}"
        );
    }
    assert_eq!(shop.snapshot().await, before);
}

async fn bad_orders_are_validated_before_touching_the_database(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 100).await;
    let before = shop.snapshot().await;
    for items in [
        vec![],
        vec![(p.id, 0)],
        vec![(p.id, -1)],
        vec![(p.id, i64::MAX)],
        vec![(-5, 1)],
    ] {
        let err = shop
            .ordo
            .place_order(shop.owner(), &shop.new_order(&items))
            .await
            .expect_err("invalid");
        assert!(
            matches!(err, Error::Validation { .. }),
            "{items:?}: {err:?}"
        );
    }
    assert_eq!(shop.snapshot().await, before);
}

async fn customers_order_for_themselves_only(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 100).await;
    let other = shop.another_customer().await;
    let mut new = shop.new_order(&[(p.id, 1)]);
    new.user_id = other.id;
    assert!(matches!(
        shop.ordo.place_order(shop.owner(), &new).await,
        Err(Error::Forbidden { .. })
    ));
    // Staff may order for a customer, but not for one that does not exist.
    let placed = shop.ordo.place_order(shop.staff(), &new).await.unwrap();
    assert_eq!(placed.order.order.user_id, other.id);
    new.user_id = 424_242;
    assert!(matches!(
        shop.ordo.place_order(shop.staff(), &new).await,
        Err(Error::Validation { .. })
    ));
    assert_eq!(shop.stock(p.id).await, 4);
    shop.assert_check_clean().await;
}
