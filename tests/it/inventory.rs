//! Products and staff stock adjustments through the ledger.

use crate::helpers::{Backend, TestShop};
use crate::on_both_databases;
use ordo::Error;
use ordo::domain::{NewProduct, ProductPatch};

on_both_databases!(
    opening_stock_and_adjustments_are_ledger_rows,
    adjustment_below_zero_is_refused,
    product_input_is_validated,
    only_staff_manage_products,
    listing_pages_through_products,
);

async fn opening_stock_and_adjustments_are_ledger_rows(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(7, 100).await;
    let after = shop
        .ordo
        .adjust_stock(shop.staff(), p.id, 5, Some("delivery"))
        .await
        .unwrap();
    assert_eq!(after.stock, 12);
    let after = shop
        .ordo
        .adjust_stock(shop.staff(), p.id, -2, Some("broken"))
        .await
        .unwrap();
    assert_eq!(after.stock, 10);
    let ledger = shop
        .ordo
        .stock_movements(shop.staff(), p.id, None, 10)
        .await
        .unwrap();
    let deltas: Vec<i64> = ledger.iter().map(|m| m.delta).collect();
    assert_eq!(deltas, [-2, 5, 7], "newest first");
    assert!(
        ledger
            .iter()
            .all(|m| m.reason == "adjust" && m.order_id.is_none())
    );
    assert_eq!(ledger[0].note.as_deref(), Some("broken"));
    let page = shop
        .ordo
        .stock_movements(shop.staff(), p.id, Some(ledger[1].id), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    shop.assert_check_clean().await;
}

async fn adjustment_below_zero_is_refused(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(3, 100).await;
    let before = shop.snapshot().await;
    match shop.ordo.adjust_stock(shop.staff(), p.id, -4, None).await {
        Err(Error::InsufficientStock {
            available,
            requested,
            ..
        }) => {
            assert_eq!((available, requested), (3, 4))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        shop.ordo.adjust_stock(shop.staff(), p.id, 0, None).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        shop.ordo.adjust_stock(shop.staff(), 987_654, 1, None).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(shop.snapshot().await, before);
}

async fn product_input_is_validated(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let good = NewProduct {
        sku: "GOOD-1".into(),
        name: "Good".into(),
        price_cents: 100,
        currency: "EUR".into(),
        stock: 1,
    };
    shop.ordo.create_product(shop.staff(), &good).await.unwrap();
    let before = shop.snapshot().await;
    match shop.ordo.create_product(shop.staff(), &good).await {
        Err(Error::Conflict(message)) => assert!(message.contains("GOOD-1"), "{message}"),
        other => panic!("duplicate sku: {other:?}"),
    }
    let bad = [
        (
            "sku",
            NewProduct {
                sku: "".into(),
                ..good.clone()
            },
        ),
        (
            "sku",
            NewProduct {
                sku: "has space".into(),
                ..good.clone()
            },
        ),
        (
            "name",
            NewProduct {
                name: " ".into(),
                ..good.clone()
            },
        ),
        (
            "price_cents",
            NewProduct {
                price_cents: -1,
                ..good.clone()
            },
        ),
        (
            "price_cents",
            NewProduct {
                price_cents: i64::MAX,
                ..good.clone()
            },
        ),
        (
            "currency",
            NewProduct {
                currency: "euro".into(),
                ..good.clone()
            },
        ),
        (
            "stock",
            NewProduct {
                stock: -1,
                ..good.clone()
            },
        ),
    ];
    for (expected, product) in bad {
        match shop.ordo.create_product(shop.staff(), &product).await {
            Err(Error::Validation { field, .. }) => assert_eq!(field, expected),
            other => panic!("{product:?}: {other:?}"),
        }
    }
    assert!(matches!(
        shop.ordo
            .update_product(shop.staff(), 31_337, &ProductPatch::default())
            .await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(shop.snapshot().await, before);
}

async fn only_staff_manage_products(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(3, 100).await;
    let before = shop.snapshot().await;
    let customer = shop.owner();
    assert!(matches!(
        shop.ordo.adjust_stock(customer, p.id, 5, None).await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        shop.ordo
            .update_product(customer, p.id, &ProductPatch::default())
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        shop.ordo.stock_movements(customer, p.id, None, 5).await,
        Err(Error::Forbidden { .. })
    ));
    assert_eq!(shop.snapshot().await, before);
}

async fn listing_pages_through_products(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(shop.product(1, 100).await.id);
    }
    let first = shop.ordo.products(0, 3).await.unwrap();
    let rest = shop
        .ordo
        .products(first.last().unwrap().id, 3)
        .await
        .unwrap();
    let seen: Vec<i64> = first.iter().chain(rest.iter()).map(|p| p.id).collect();
    assert_eq!(seen, ids);
}
