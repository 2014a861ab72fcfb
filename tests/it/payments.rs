//! Opening payments and applying provider events: idempotent, amount-checked, late
//! payments kept with refund_required.

use crate::helpers::{Backend, MINUTE, T0, TestShop};
use crate::on_both_databases;
use ordo::Error;
use ordo::domain::{OrderStatus, PaymentStatus, ProviderEvent, ProviderStatus};
use ordo::payments::EventOutcome;

on_both_databases!(
    open_payment_returns_the_open_one_or_a_new_one,
    payments_are_not_reopened_past_the_unpaid_timeout,
    provider_events_apply_at_most_once,
    wrong_amount_is_refused_and_changes_nothing,
    failure_then_success,
    late_success_after_cancellation_is_kept_for_refund,
);

fn event(id: &str, payment_id: i64, status: ProviderStatus, amount_cents: i64) -> ProviderEvent {
    ProviderEvent {
        event_id: id.to_owned(),
        payment_id,
        status,
        amount_cents,
    }
}

async fn open_payment_returns_the_open_one_or_a_new_one(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 300).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    let same = shop
        .ordo
        .open_payment(shop.owner(), id, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        same.payment.id, placed.payment.id,
        "the open, unexpired payment comes back"
    );

    // The payment TTL passes, the unpaid timeout has not (TTL 30 = timeout 30: use 20/40).
    let shop_ordo = ordo::Ordo::new(
        shop.ordo.db.clone(),
        ordo::Policy {
            payment_ttl_ms: 20 * MINUTE,
            unpaid_timeout_ms: 40 * MINUTE,
            ..shop.ordo.policy
        },
        shop.ordo.clock.clone(),
    );
    shop.ordo.clock.set(T0 + 31 * MINUTE);
    let fresh = shop_ordo
        .open_payment(shop.owner(), id, &Default::default())
        .await
        .unwrap();
    assert_ne!(fresh.payment.id, placed.payment.id);
    assert_eq!(fresh.payment.expires_at, T0 + 51 * MINUTE);
    let payments = shop.ordo.order(shop.owner(), id).await.unwrap().payments;
    assert_eq!(payments[0].status, PaymentStatus::Expired);
    assert_eq!(payments[1].status, PaymentStatus::Pending);

    // Only the owner opens payments.
    let stranger = shop.another_customer().await.actor();
    assert!(matches!(
        shop_ordo
            .open_payment(stranger, id, &Default::default())
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        shop_ordo
            .open_payment(shop.staff(), id, &Default::default())
            .await,
        Err(Error::Forbidden { .. })
    ));
    shop.assert_check_clean().await;
}

async fn payments_are_not_reopened_past_the_unpaid_timeout(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 300).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    shop.ordo.clock.set(T0 + 30 * MINUTE);
    let before = shop.snapshot().await;
    assert!(matches!(
        shop.ordo
            .open_payment(shop.owner(), id, &Default::default())
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(shop.snapshot().await, before);

    // And not for an order that is no longer pending.
    let other = shop.order(&[(p.id, 1)]).await;
    shop.pay(&other).await;
    assert!(matches!(
        shop.ordo
            .open_payment(shop.owner(), other.order.order.id, &Default::default())
            .await,
        Err(Error::Conflict(_))
    ));
}

async fn provider_events_apply_at_most_once(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 300).await;
    let placed = shop.order(&[(p.id, 2)]).await;
    let ev = event("evt-1", placed.payment.id, ProviderStatus::Succeeded, 600);
    assert_eq!(
        shop.ordo.apply_provider_event(&ev).await.unwrap(),
        EventOutcome::Paid
    );
    let after_first = shop.snapshot().await;
    assert_eq!(
        shop.ordo.apply_provider_event(&ev).await.unwrap(),
        EventOutcome::Replayed
    );
    assert_eq!(
        shop.snapshot().await,
        after_first,
        "a replay changes nothing"
    );
    // The same success under a new event id changes nothing either.
    let again = event("evt-2", placed.payment.id, ProviderStatus::Succeeded, 600);
    assert_eq!(
        shop.ordo.apply_provider_event(&again).await.unwrap(),
        EventOutcome::NoChange
    );
    assert_eq!(shop.moves(placed.order.order.id).await.len(), 2);
    assert!(matches!(
        shop.ordo
            .apply_provider_event(&event("evt-3", 777_777, ProviderStatus::Succeeded, 1))
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        shop.ordo
            .apply_provider_event(&event("", placed.payment.id, ProviderStatus::Failed, 1))
            .await,
        Err(Error::Validation { .. })
    ));
    shop.assert_check_clean().await;
}

async fn wrong_amount_is_refused_and_changes_nothing(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 300).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let before = shop.snapshot().await;
    let wrong = event("evt-x", placed.payment.id, ProviderStatus::Succeeded, 299);
    match shop.ordo.apply_provider_event(&wrong).await {
        Err(Error::Validation { field, .. }) => assert_eq!(field, "amount_cents"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        shop.snapshot().await,
        before,
        "not even the event id is kept"
    );
    let right = event("evt-x", placed.payment.id, ProviderStatus::Succeeded, 300);
    assert_eq!(
        shop.ordo.apply_provider_event(&right).await.unwrap(),
        EventOutcome::Paid
    );
}

async fn failure_then_success(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 300).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    let failed = event("f-1", placed.payment.id, ProviderStatus::Failed, 300);
    assert_eq!(
        shop.ordo.apply_provider_event(&failed).await.unwrap(),
        EventOutcome::Failed
    );
    assert_eq!(shop.status(id).await, OrderStatus::Pending);
    assert_eq!(
        shop.stock(p.id).await,
        4,
        "a failed payment keeps the reservation"
    );
    let ok = event("s-1", placed.payment.id, ProviderStatus::Succeeded, 300);
    assert_eq!(
        shop.ordo.apply_provider_event(&ok).await.unwrap(),
        EventOutcome::Paid
    );
    let late_failure = event("f-2", placed.payment.id, ProviderStatus::Failed, 300);
    assert_eq!(
        shop.ordo.apply_provider_event(&late_failure).await.unwrap(),
        EventOutcome::NoChange
    );
    let payment = &shop.ordo.order(shop.owner(), id).await.unwrap().payments[0];
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(payment.provider_ref.as_deref(), Some("s-1"));
    shop.assert_check_clean().await;
}

async fn late_success_after_cancellation_is_kept_for_refund(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 300).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    shop.ordo
        .cancel_order(shop.owner(), id, None)
        .await
        .unwrap();
    let late = event("late-1", placed.payment.id, ProviderStatus::Succeeded, 300);
    assert_eq!(
        shop.ordo.apply_provider_event(&late).await.unwrap(),
        EventOutcome::RefundRequired
    );
    assert_eq!(shop.status(id).await, OrderStatus::Cancelled);
    assert_eq!(shop.stock(p.id).await, 5, "the stock stays released");
    let to_refund = shop
        .ordo
        .payments_to_refund(shop.staff(), 0, 10)
        .await
        .unwrap();
    assert_eq!(to_refund.len(), 1);
    assert_eq!(to_refund[0].id, placed.payment.id);
    assert_eq!(to_refund[0].status, PaymentStatus::Succeeded);
    assert!(matches!(
        shop.ordo.payments_to_refund(shop.owner(), 0, 10).await,
        Err(Error::Forbidden { .. })
    ));
    shop.assert_check_clean().await;
}
