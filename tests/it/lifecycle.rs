//! Each transition's effects and history row; each forbidden move refused, changing nothing.

use crate::helpers::{Backend, MINUTE, TestShop};
use crate::on_both_databases;
use ordo::Error;
use ordo::domain::{OrderStatus, PaymentStatus};
use ordo::orders::TransitionInput;

on_both_databases!(
    payment_moves_pending_to_paid,
    owner_cancels_pending_order_and_stock_comes_back,
    staff_cancels_paid_order_and_payment_needs_refund,
    ship_complete_refund_counts_sales_once,
    refund_of_paid_order_restocks_without_touching_sales,
    rejected_refund_returns_to_paid_and_sales_count_once,
    forbidden_moves_are_refused_and_change_nothing,
    roles_are_enforced,
);

fn note(text: &str) -> TransitionInput {
    TransitionInput {
        note: Some(text.to_owned()),
        ..TransitionInput::default()
    }
}

async fn payment_moves_pending_to_paid(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(10, 500).await;
    let placed = shop.order(&[(p.id, 2)]).await;
    shop.ordo.clock.advance(MINUTE);
    assert_eq!(shop.pay(&placed).await, ordo::payments::EventOutcome::Paid);

    let details = shop
        .ordo
        .order(shop.owner(), placed.order.order.id)
        .await
        .unwrap();
    assert_eq!(details.order.status, OrderStatus::Paid);
    assert_eq!(details.order.paid_at, Some(crate::helpers::T0 + MINUTE));
    assert_eq!(details.payments[0].status, PaymentStatus::Succeeded);
    assert_eq!(shop.stock(p.id).await, 8, "paying keeps the reservation");
    let history = shop.history(placed.order.order.id).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].from_status.as_deref(), Some("pending"));
    assert_eq!(history[1].to_status, "paid");
    assert_eq!(history[1].actor, "system:payment");
    shop.assert_check_clean().await;
}

async fn owner_cancels_pending_order_and_stock_comes_back(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let a = shop.product(10, 500).await;
    let b = shop.product(5, 700).await;
    let placed = shop.order(&[(b.id, 2), (a.id, 3)]).await;
    assert_eq!((shop.stock(a.id).await, shop.stock(b.id).await), (7, 3));

    let order = shop
        .ordo
        .cancel_order(
            shop.owner(),
            placed.order.order.id,
            Some("changed my mind".into()),
        )
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.cancel_reason.as_deref(), Some("changed my mind"));
    assert_eq!(order.cancelled_at, Some(crate::helpers::T0));
    assert_eq!((shop.stock(a.id).await, shop.stock(b.id).await), (10, 5));
    let releases = shop
        .scalar(
            "SELECT COUNT(*) FROM stock_movements WHERE order_id = $1 AND reason = 'release'",
            order.id,
        )
        .await;
    assert_eq!(releases, 2, "one release row per item");
    let details = shop.ordo.order(shop.owner(), order.id).await.unwrap();
    assert_eq!(details.payments[0].status, PaymentStatus::Cancelled);
    assert_eq!(
        shop.moves(order.id).await,
        ["none->pending", "pending->cancelled"]
    );
    let history = shop.history(order.id).await;
    assert_eq!(history[1].actor, format!("user:{}", shop.customer.id));
    assert_eq!(history[1].note.as_deref(), Some("changed my mind"));
    shop.assert_check_clean().await;
}

async fn staff_cancels_paid_order_and_payment_needs_refund(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(4, 1000).await;
    let placed = shop.order(&[(p.id, 4)]).await;
    shop.pay(&placed).await;
    let order = shop
        .ordo
        .cancel_order(shop.staff(), placed.order.order.id, None)
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        order.cancel_reason,
        Some(format!("cancelled by user:{}", shop.staff.id))
    );
    assert_eq!(shop.stock(p.id).await, 4);
    let details = shop.ordo.order(shop.staff(), order.id).await.unwrap();
    assert_eq!(details.payments[0].status, PaymentStatus::Succeeded);
    assert!(details.payments[0].refund_required);
    let to_refund = shop
        .ordo
        .payments_to_refund(shop.staff(), 0, 10)
        .await
        .unwrap();
    assert_eq!(to_refund.len(), 1);
    shop.assert_check_clean().await;
}

async fn ship_complete_refund_counts_sales_once(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(10, 250).await;
    let placed = shop.order(&[(p.id, 3)]).await;
    let id = placed.order.order.id;
    shop.pay(&placed).await;
    let shipped = shop
        .ordo
        .transition(
            shop.staff(),
            id,
            OrderStatus::Shipped,
            &TransitionInput {
                note: None,
                carrier: Some("DHL".into()),
                tracking_number: Some("TRACK-1".into()),
                ..TransitionInput::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(shipped.carrier.as_deref(), Some("DHL"));
    assert_eq!(shipped.tracking_number.as_deref(), Some("TRACK-1"));

    shop.ordo.clock.advance(MINUTE);
    let done = shop
        .ordo
        .transition(shop.owner(), id, OrderStatus::Completed, &note("arrived"))
        .await
        .unwrap();
    assert_eq!(done.completed_at, Some(crate::helpers::T0 + MINUTE));
    let product = shop.ordo.product(p.id).await.unwrap();
    assert_eq!((product.stock, product.sales_count), (7, 3));

    shop.ordo
        .transition(shop.owner(), id, OrderStatus::Refunding, &note("broken"))
        .await
        .unwrap();
    let refunded = shop
        .ordo
        .transition(shop.staff(), id, OrderStatus::Refunded, &note("approved"))
        .await
        .unwrap();
    assert_eq!(refunded.status, OrderStatus::Refunded);
    let product = shop.ordo.product(p.id).await.unwrap();
    assert_eq!((product.stock, product.sales_count), (10, 0));
    let restocks = shop
        .scalar(
            "SELECT COUNT(*) FROM stock_movements WHERE order_id = $1 AND reason = 'restock'",
            id,
        )
        .await;
    assert_eq!(restocks, 1);
    let details = shop.ordo.order(shop.staff(), id).await.unwrap();
    assert_eq!(details.payments[0].status, PaymentStatus::Refunded);
    assert_eq!(
        shop.moves(id).await,
        [
            "none->pending",
            "pending->paid",
            "paid->shipped",
            "shipped->completed",
            "completed->refunding",
            "refunding->refunded"
        ]
    );
    shop.assert_check_clean().await;
}

async fn refund_of_paid_order_restocks_without_touching_sales(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 100).await;
    let placed = shop.order(&[(p.id, 5)]).await;
    let id = placed.order.order.id;
    shop.pay(&placed).await;
    shop.ordo
        .transition(
            shop.owner(),
            id,
            OrderStatus::Refunding,
            &note("not needed"),
        )
        .await
        .unwrap();
    shop.ordo
        .transition(
            shop.staff(),
            id,
            OrderStatus::Refunded,
            &TransitionInput::default(),
        )
        .await
        .unwrap();
    let product = shop.ordo.product(p.id).await.unwrap();
    assert_eq!((product.stock, product.sales_count), (5, 0));
    shop.assert_check_clean().await;
}

async fn rejected_refund_returns_to_paid_and_sales_count_once(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 100).await;
    let placed = shop.order(&[(p.id, 2)]).await;
    let id = placed.order.order.id;
    let paid_at = {
        shop.pay(&placed).await;
        shop.ordo
            .order(shop.staff(), id)
            .await
            .unwrap()
            .order
            .paid_at
    };
    let staff = shop.staff();
    let go = |to| {
        let ordo = shop.ordo.clone();
        async move {
            ordo.transition(staff, id, to, &TransitionInput::default())
                .await
                .unwrap()
        }
    };
    go(OrderStatus::Shipped).await;
    go(OrderStatus::Completed).await;
    go(OrderStatus::Refunding).await;
    shop.ordo.clock.advance(MINUTE);
    let back = go(OrderStatus::Paid).await;
    assert_eq!(
        back.paid_at, paid_at,
        "paid_at keeps the first payment time"
    );
    go(OrderStatus::Shipped).await;
    go(OrderStatus::Completed).await;
    assert_eq!(shop.ordo.product(p.id).await.unwrap().sales_count, 2);
    go(OrderStatus::Refunding).await;
    go(OrderStatus::Refunded).await;
    let product = shop.ordo.product(p.id).await.unwrap();
    assert_eq!((product.stock, product.sales_count), (5, 0));
    shop.assert_check_clean().await;
}

/// Walks an order to `target` along the lifecycle.
async fn order_in(shop: &TestShop, target: OrderStatus) -> i64 {
    let p = shop.product(3, 100).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    let path: &[OrderStatus] = match target {
        OrderStatus::Pending => &[],
        OrderStatus::Paid => &[OrderStatus::Paid],
        OrderStatus::Shipped => &[OrderStatus::Paid, OrderStatus::Shipped],
        OrderStatus::Completed => &[
            OrderStatus::Paid,
            OrderStatus::Shipped,
            OrderStatus::Completed,
        ],
        OrderStatus::Cancelled => &[OrderStatus::Cancelled],
        OrderStatus::Refunding => &[OrderStatus::Paid, OrderStatus::Refunding],
        OrderStatus::Refunded => &[
            OrderStatus::Paid,
            OrderStatus::Refunding,
            OrderStatus::Refunded,
        ],
    };
    for &step in path {
        if step == OrderStatus::Paid {
            shop.pay(&placed).await;
        } else {
            shop.ordo
                .transition(shop.staff(), id, step, &TransitionInput::default())
                .await
                .unwrap();
        }
    }
    assert_eq!(shop.status(id).await, target);
    id
}

async fn forbidden_moves_are_refused_and_change_nothing(backend: Backend) {
    let shop = TestShop::new(backend).await;
    for from in OrderStatus::ALL {
        let id = order_in(&shop, from).await;
        let before = shop.snapshot().await;
        for to in OrderStatus::ALL {
            if from.can_move_to(to) {
                continue;
            }
            let err = shop
                .ordo
                .transition(shop.staff(), id, to, &TransitionInput::default())
                .await
                .expect_err("forbidden move");
            match err {
                Error::InvalidTransition {
                    from: f,
                    to: t,
                    allowed,
                } => {
                    assert_eq!((f, t), (from, to));
                    assert_eq!(allowed, from.allowed_moves().to_vec());
                    let message = Error::InvalidTransition {
                        from: f,
                        to: t,
                        allowed: allowed.clone(),
                    }
                    .to_string();
                    for a in &allowed {
                        assert!(message.contains(a.as_str()), "{message}");
                    }
                }
                other => panic!("{from} -> {to}: {other:?}"),
            }
        }
        assert_eq!(
            shop.snapshot().await,
            before,
            "a refused move changed something"
        );
    }
    shop.assert_check_clean().await;
}

async fn roles_are_enforced(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(3, 100).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    let stranger = shop.another_customer().await.actor();
    let before = shop.snapshot().await;

    // Another customer's order does not exist for them.
    assert!(matches!(
        shop.ordo.cancel_order(stranger, id, None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        shop.ordo.order(stranger, id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        shop.ordo.order_history(stranger, id).await,
        Err(Error::NotFound { .. })
    ));
    // Nobody but a payment pays.
    for actor in [shop.owner(), shop.staff()] {
        assert!(matches!(
            shop.ordo
                .transition(actor, id, OrderStatus::Paid, &TransitionInput::default())
                .await,
            Err(Error::Forbidden { .. })
        ));
    }
    assert_eq!(shop.snapshot().await, before);

    shop.pay(&placed).await;
    // The owner cannot ship or cancel a paid order.
    for to in [OrderStatus::Shipped, OrderStatus::Cancelled] {
        assert!(matches!(
            shop.ordo
                .transition(shop.owner(), id, to, &TransitionInput::default())
                .await,
            Err(Error::Forbidden { .. })
        ));
    }
    let own = shop
        .ordo
        .orders(
            shop.owner(),
            ordo::orders::OrderFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        own.iter().map(|o| o.id).collect::<Vec<_>>(),
        [id],
        "the owner lists their own order"
    );
    let theirs = shop
        .ordo
        .orders(
            stranger,
            ordo::orders::OrderFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(theirs.is_empty(), "a customer lists only their own orders");
    shop.assert_check_clean().await;
}
