//! Outbound events: the outbox written with every change, signed webhook delivery with
//! retries, ordered endpoints, the payment reminder, replay, redelivery and secret
//! rotation — on both databases, against a real HTTP receiver that checks signatures with
//! the reference `standardwebhooks` crate.

use crate::console::scheduled_sweep;
use crate::helpers::{Backend, MINUTE, T0, TestShop, test_policy};
use crate::on_both_databases;
use crate::receiver::{Receiver, Reply};
use ordo::domain::{OrderStatus, ProviderEvent, ProviderStatus};
use ordo::events::dispatch::{DispatchConfig, Dispatcher};
use ordo::events::endpoints::{Delivery, DeliveryFilter, NewEndpoint};
use ordo::orders::TransitionInput;
use ordo::{Error, Ordo};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

on_both_databases!(
    every_event_type_arrives_signed_with_its_data,
    a_failing_receiver_gets_the_same_webhook_id_each_time,
    gone_disables_the_endpoint,
    retry_after_is_honoured,
    an_ordered_endpoint_sees_each_order_in_seq_order,
    the_reminder_fires_once_and_never_for_a_paid_order,
    replay_and_redeliver,
    a_rotated_secret_signs_twice,
    a_refused_change_writes_no_event,
    event_types_filter_what_an_endpoint_gets,
    a_slow_receiver_cannot_hold_a_worker,
    dispatchers_of_several_processes_share_the_work,
    a_thousand_events_in_one_write,
    a_swept_order_is_in_its_event_as_the_api_shows_it,
);

pub fn dispatcher(ordo: &Ordo) -> Arc<Dispatcher> {
    Dispatcher::new(
        ordo.clone(),
        DispatchConfig {
            timeout: Duration::from_secs(2),
            allow_private: true,
            ..DispatchConfig::default()
        },
    )
    .expect("dispatcher")
}

/// Dispatches until nothing is due now.
pub async fn drain(dispatcher: &Arc<Dispatcher>) -> usize {
    let mut total = 0;
    loop {
        let n = dispatcher.dispatch_once().await.expect("dispatch");
        if n == 0 {
            return total;
        }
        total += n;
    }
}

/// The newest `limit` deliveries, as staff see them.
async fn deliveries(shop: &TestShop, limit: i64) -> Vec<Delivery> {
    shop.ordo
        .deliveries(
            shop.staff(),
            &DeliveryFilter {
                limit,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// One order's events of one type, as staff read them from the log.
async fn events_of(
    shop: &TestShop,
    kind: ordo::events::EventType,
    order_id: i64,
) -> Vec<ordo::events::Event> {
    shop.ordo
        .events(
            shop.staff(),
            &ordo::events::EventFilter {
                after: 0,
                kind: Some(kind),
                order_id: Some(order_id),
                limit: 10,
            },
        )
        .await
        .unwrap()
}

async fn subscribe(
    shop: &TestShop,
    receiver: &Receiver,
    ordered: bool,
    types: Option<Vec<&str>>,
) -> i64 {
    let (endpoint, secret) = shop
        .ordo
        .create_endpoint(
            shop.staff(),
            &NewEndpoint {
                url: receiver.url.clone(),
                event_types: types.map(|t| t.into_iter().map(str::to_owned).collect()),
                description: Some("test receiver".into()),
                ordered,
            },
        )
        .await
        .expect("endpoint");
    receiver.trust(&secret);
    endpoint.id
}

fn staff_move(to: OrderStatus) -> TransitionInput {
    TransitionInput {
        note: Some(format!("to {to}")),
        carrier: (to == OrderStatus::Shipped).then(|| "DHL".to_owned()),
        tracking_number: (to == OrderStatus::Shipped).then(|| "JD1".to_owned()),
        ..TransitionInput::default()
    }
}

async fn every_event_type_arrives_signed_with_its_data(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    subscribe(&shop, &receiver, false, None).await;
    let dispatcher = dispatcher(&shop.ordo);
    let staff = shop.staff();
    let p = shop.product(3, 500).await;

    // created, paid, shipped, completed, refund requested, rejected, requested, refunded.
    let a = shop.order(&[(p.id, 3)]).await; // takes the last units: out of stock
    let a_id = a.order.order.id;
    shop.pay(&a).await;
    for to in [
        OrderStatus::Shipped,
        OrderStatus::Completed,
        OrderStatus::Refunding,
        OrderStatus::Paid,
        OrderStatus::Refunding,
        OrderStatus::Refunded, // stock back: back in stock
    ] {
        shop.ordo
            .transition(staff, a_id, to, &staff_move(to))
            .await
            .unwrap();
    }
    // payment.failed, then cancelled by its owner.
    let b = shop.order(&[(p.id, 1)]).await;
    shop.ordo
        .apply_provider_event(&ProviderEvent {
            event_id: "evt-fail-b".into(),
            payment_id: b.payment.id,
            status: ProviderStatus::Failed,
            amount_cents: b.payment.amount_cents,
        })
        .await
        .unwrap();
    shop.ordo
        .cancel_order(
            shop.owner(),
            b.order.order.id,
            Some("changed my mind".into()),
        )
        .await
        .unwrap();
    // A reminder, then expiry by the sweep, then a late payment.
    let c = shop.order(&[(p.id, 2)]).await;
    shop.ordo.clock.set(T0 + 21 * MINUTE);
    assert_eq!(
        shop.ordo
            .send_payment_reminders(&AtomicBool::new(false))
            .await
            .unwrap(),
        1
    );
    shop.ordo.clock.set(T0 + 31 * MINUTE);
    assert_eq!(scheduled_sweep(&shop).await.cancelled, 1);
    shop.pay(&c).await;

    drain(&dispatcher).await;
    let got = receiver.accepted();
    assert!(
        got.iter().all(|r| r.verified_by == [0]),
        "every signature verifies"
    );
    assert!(
        got.iter().all(|r| r.webhook_id == r.body["id"]),
        "webhook-id is the event id"
    );
    let kinds: Vec<&str> = got.iter().map(|r| r.kind()).collect();
    for kind in [
        "order.created",
        "order.payment_reminder",
        "order.paid",
        "order.expired",
        "order.cancelled",
        "order.shipped",
        "order.completed",
        "order.refund_requested",
        "order.refunded",
        "order.refund_rejected",
        "payment.failed",
        "payment.late_succeeded",
        "product.out_of_stock",
        "product.back_in_stock",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }

    // Each order's events arrive numbered 1, 2, 3… with where they came from.
    type Seen = (i64, String, Option<String>, String);
    let mut by_order: BTreeMap<i64, Vec<Seen>> = BTreeMap::new();
    for r in &got {
        if let (Some(order), Some(seq)) = (r.order_id(), r.seq()) {
            by_order.entry(order).or_default().push((
                seq,
                r.kind().to_owned(),
                r.body["data"]["previous_status"]
                    .as_str()
                    .map(str::to_owned),
                r.body["data"]["order"]["status"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ));
        }
    }
    let a_events = by_order.get(&a_id).unwrap();
    let expected = [
        (1, "order.created", None, "pending"),
        (2, "order.paid", Some("pending"), "paid"),
        (3, "order.shipped", Some("paid"), "shipped"),
        (4, "order.completed", Some("shipped"), "completed"),
        (5, "order.refund_requested", Some("completed"), "refunding"),
        (6, "order.refund_rejected", Some("refunding"), "paid"),
        (7, "order.refund_requested", Some("paid"), "refunding"),
        (8, "order.refunded", Some("refunding"), "refunded"),
    ];
    let mut sorted = a_events.clone();
    sorted.sort();
    assert_eq!(
        sorted
            .iter()
            .map(|(s, k, p, st)| (*s, k.as_str(), p.as_deref(), st.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
    for (order, events) in &by_order {
        let mut seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
        seqs.sort();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "order {order}: gapless"
        );
    }

    // The data each type carries.
    let find = |kind: &str| got.iter().find(|r| r.kind() == kind).unwrap().body["data"].clone();
    let created = got
        .iter()
        .find(|r| r.kind() == "order.created" && r.order_id() == Some(a_id))
        .unwrap()
        .body["data"]
        .clone();
    assert_eq!(
        created["payment"]["expires_at"],
        created["order"]["payments"][0]["expires_at"]
    );
    assert!(created["unpaid_deadline"].is_string());
    assert_eq!(created["order"]["items"][0]["quantity"], 3);
    assert_eq!(find("order.shipped")["carrier"], "DHL");
    assert_eq!(find("order.shipped")["tracking_number"], "JD1");
    assert_eq!(find("order.completed")["carrier"], "DHL");
    assert_eq!(find("order.paid")["payment"]["status"], "succeeded");
    let cancelled = find("order.cancelled");
    assert_eq!(cancelled["reason"], "changed my mind");
    assert_eq!(cancelled["actor"], format!("user:{}", shop.customer.id));
    assert_eq!(cancelled["refund_required"], false);
    let expired = find("order.expired");
    assert_eq!(
        expired["units_released"],
        serde_json::json!([{"product_id": p.id, "quantity": 2}])
    );
    assert_eq!(expired["previous_status"], "pending");
    assert_eq!(find("payment.failed")["payment"]["status"], "failed");
    let late = find("payment.late_succeeded");
    assert_eq!(late["refund_required"], true);
    assert_eq!(late["order"]["status"], "cancelled");
    assert!(find("order.payment_reminder")["deadline"].is_string());
    assert_eq!(find("product.out_of_stock")["product"]["stock"], 0);
    assert!(
        find("product.back_in_stock")["product"]["stock"]
            .as_i64()
            .unwrap()
            > 0
    );

    // The log holds exactly what was delivered, once.
    let log = shop
        .ordo
        .events(
            staff,
            &ordo::events::EventFilter {
                after: 0,
                kind: None,
                order_id: None,
                limit: 200,
            },
        )
        .await
        .unwrap();
    let mut delivered: Vec<&str> = got.iter().map(|r| r.webhook_id.as_str()).collect();
    delivered.sort();
    let mut logged: Vec<&str> = log.iter().map(|e| e.id.as_str()).collect();
    logged.sort();
    assert_eq!(delivered, logged);
    shop.assert_check_clean().await;
}

async fn a_failing_receiver_gets_the_same_webhook_id_each_time(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    subscribe(&shop, &receiver, false, Some(vec!["order.created"])).await;
    let dispatcher = dispatcher(&shop.ordo);
    let p = shop.product(5, 100).await;
    shop.order(&[(p.id, 1)]).await;
    receiver.then(&[Reply::Status(500), Reply::Status(503)]);

    assert_eq!(drain(&dispatcher).await, 1);
    // Not due again until about 5 s later (with jitter, at most 5.5 s).
    shop.ordo.clock.advance(4_000);
    assert_eq!(drain(&dispatcher).await, 0);
    shop.ordo.clock.advance(1_600);
    assert_eq!(drain(&dispatcher).await, 1);
    // The second failure waits about 5 minutes.
    shop.ordo.clock.advance(4 * MINUTE);
    assert_eq!(drain(&dispatcher).await, 0);
    shop.ordo.clock.advance(MINUTE + 31_000);
    assert_eq!(drain(&dispatcher).await, 1);

    let got = receiver.received();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    assert!(got.iter().all(|r| r.webhook_id == got[0].webhook_id));
    assert!(
        got.iter().all(|r| r.raw == got[0].raw),
        "the same body each time"
    );
    let deliveries = deliveries(&shop, 10).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, "succeeded");
    assert_eq!(deliveries[0].attempt_count, 3);
    assert_eq!(
        deliveries[0]
            .attempts
            .iter()
            .map(|a| a.http_status)
            .collect::<Vec<_>>(),
        [Some(500), Some(503), Some(200)]
    );
    assert_eq!(deliveries[0].attempts[2].response.as_deref(), Some("ok"));
}

async fn gone_disables_the_endpoint(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    let id = subscribe(&shop, &receiver, false, None).await;
    let dispatcher = dispatcher(&shop.ordo);
    let p = shop.product(5, 100).await;
    shop.order(&[(p.id, 1)]).await;
    receiver.then(&[Reply::Status(410)]);
    assert_eq!(drain(&dispatcher).await, 1);
    let endpoint = shop.ordo.endpoint(shop.staff(), id).await.unwrap();
    assert!(!endpoint.enabled);
    assert!(endpoint.disabled_reason.unwrap().contains("410"));
    // Nothing more goes there, however long one waits.
    shop.order(&[(p.id, 1)]).await;
    shop.ordo.clock.advance(48 * 60 * MINUTE);
    assert_eq!(drain(&dispatcher).await, 0);
    assert_eq!(receiver.received().len(), 1);
    let dead = shop
        .ordo
        .deliveries(
            shop.staff(),
            &DeliveryFilter {
                status: Some("dead".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
}

async fn retry_after_is_honoured(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    subscribe(&shop, &receiver, false, None).await;
    let dispatcher = dispatcher(&shop.ordo);
    let p = shop.product(5, 100).await;
    shop.order(&[(p.id, 1)]).await;
    receiver.then(&[Reply::RetryAfter(429, 120)]);
    assert_eq!(drain(&dispatcher).await, 1);
    // Not after the usual 5 s: after the 120 s asked for.
    shop.ordo.clock.advance(60_000);
    assert_eq!(drain(&dispatcher).await, 0);
    shop.ordo.clock.advance(61_000);
    assert_eq!(drain(&dispatcher).await, 1);
    assert_eq!(receiver.accepted().len(), 1);
}

async fn an_ordered_endpoint_sees_each_order_in_seq_order(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    subscribe(&shop, &receiver, true, None).await;
    receiver.fail_every(3);
    let dispatcher = dispatcher(&shop.ordo);
    let p = shop.product(100, 100).await;
    let staff = shop.staff();
    let mut orders = Vec::new();
    for _ in 0..6 {
        let placed = shop.order(&[(p.id, 1)]).await;
        shop.pay(&placed).await;
        for to in [OrderStatus::Shipped, OrderStatus::Completed] {
            shop.ordo
                .transition(staff, placed.order.order.id, to, &staff_move(to))
                .await
                .unwrap();
        }
        orders.push(placed.order.order.id);
    }
    // Dispatch, letting every retry come due (5 s, 5 min, 30 min…), until everything
    // arrived.
    for _ in 0..20 {
        drain(&dispatcher).await;
        shop.ordo.clock.advance(35 * MINUTE);
    }
    let got = receiver.accepted();
    for id in orders {
        let seqs: Vec<i64> = got
            .iter()
            .filter(|r| r.order_id() == Some(id))
            .map(|r| r.seq().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4], "order {id} arrived in order, each once");
    }
    assert!(
        receiver.received().iter().any(|r| r.answered == 500),
        "the receiver did fail"
    );
}

async fn the_reminder_fires_once_and_never_for_a_paid_order(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(10, 100).await;
    let unpaid = shop.order(&[(p.id, 1)]).await;
    let paid = shop.order(&[(p.id, 1)]).await;
    shop.pay(&paid).await;
    let stop = AtomicBool::new(false);
    // 19 minutes in: the deadline (30) is more than 10 minutes away.
    shop.ordo.clock.set(T0 + 19 * MINUTE);
    assert_eq!(shop.ordo.send_payment_reminders(&stop).await.unwrap(), 0);
    shop.ordo.clock.set(T0 + 21 * MINUTE);
    // Two workers at once still remind once.
    let (a, b) = tokio::join!(
        shop.ordo.send_payment_reminders(&stop),
        shop.ordo.send_payment_reminders(&stop)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(shop.ordo.send_payment_reminders(&stop).await.unwrap(), 0);
    let reminders = |order_id| {
        events_of(
            &shop,
            ordo::events::EventType::OrderPaymentReminder,
            order_id,
        )
    };
    let sent = reminders(unpaid.order.order.id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].data["seq"], 2);
    assert!(reminders(paid.order.order.id).await.is_empty());
    // Past the deadline nothing more is sent, and lead 0 turns it off.
    shop.ordo.clock.set(T0 + 40 * MINUTE);
    let fresh = shop.order(&[(p.id, 1)]).await;
    let mut off = shop.ordo.clone();
    off.policy.payment_reminder_lead_ms = 0;
    shop.ordo.clock.set(T0 + 65 * MINUTE);
    assert_eq!(off.send_payment_reminders(&stop).await.unwrap(), 0);
    assert!(reminders(fresh.order.order.id).await.is_empty());
    shop.assert_check_clean().await;
}

async fn replay_and_redeliver(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    let endpoint = subscribe(&shop, &receiver, false, None).await;
    let dispatcher = dispatcher(&shop.ordo);
    let staff = shop.staff();
    let p = shop.product(10, 100).await;
    shop.order(&[(p.id, 1)]).await;
    shop.ordo.clock.advance(MINUTE);
    shop.order(&[(p.id, 1)]).await;
    drain(&dispatcher).await;
    assert_eq!(receiver.accepted().len(), 2);

    // Redeliver the first: the same webhook-id again.
    let deliveries = deliveries(&shop, 10).await;
    let first = deliveries.last().unwrap();
    shop.ordo.redeliver(staff, first.id).await.unwrap();
    drain(&dispatcher).await;
    let got = receiver.accepted();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].webhook_id, first.event_id);

    // Replay a range: only the events in it, with their own ids.
    let replayed = shop
        .ordo
        .replay_events(staff, endpoint, T0, T0 + 30_000)
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    drain(&dispatcher).await;
    assert_eq!(receiver.accepted().len(), 4);
    assert_eq!(receiver.accepted()[3].webhook_id, first.event_id);
    assert!(matches!(
        shop.ordo.replay_events(staff, endpoint, T0 + 1, T0).await,
        Err(Error::Validation { field, .. }) if field == "until"
    ));

    // A deleted endpoint's deliveries cannot be redelivered.
    shop.ordo.delete_endpoint(staff, endpoint).await.unwrap();
    assert!(matches!(
        shop.ordo.redeliver(staff, first.id).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        shop.ordo
            .replay_events(staff, endpoint, T0, T0 + MINUTE)
            .await,
        Err(Error::NotFound { .. })
    ));
    // Customers manage nothing.
    assert!(matches!(
        shop.ordo.redeliver(shop.owner(), first.id).await,
        Err(Error::Forbidden { .. })
    ));
}

async fn a_rotated_secret_signs_twice(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    let id = subscribe(&shop, &receiver, false, None).await;
    let dispatcher = dispatcher(&shop.ordo);
    let p = shop.product(10, 100).await;
    let (_, new_secret) = shop
        .ordo
        .rotate_endpoint_secret(shop.staff(), id)
        .await
        .unwrap();
    receiver.trust(&new_secret);
    shop.order(&[(p.id, 1)]).await;
    drain(&dispatcher).await;
    let got = receiver.accepted();
    assert_eq!(got[0].signature.split(' ').count(), 2);
    assert_eq!(got[0].verified_by, [0, 1], "old and new secret both verify");
    // A day later only the new one signs.
    shop.ordo.clock.advance(24 * 60 * MINUTE + 1);
    shop.order(&[(p.id, 1)]).await;
    drain(&dispatcher).await;
    let got = receiver.accepted();
    assert_eq!(got[1].signature.split(' ').count(), 1);
    assert_eq!(got[1].verified_by, [1]);
}

async fn a_refused_change_writes_no_event(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(2, 100).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let count = || shop.count("SELECT COUNT(*) FROM events");
    let before = count().await;
    // Too little stock, a forbidden move, a move the lifecycle refuses: nothing written.
    assert!(
        shop.ordo
            .place_order(shop.owner(), &shop.new_order(&[(p.id, 5)]))
            .await
            .is_err()
    );
    assert!(
        shop.ordo
            .transition(
                shop.owner(),
                placed.order.order.id,
                OrderStatus::Shipped,
                &staff_move(OrderStatus::Shipped)
            )
            .await
            .is_err()
    );
    assert!(
        shop.ordo
            .transition(
                shop.staff(),
                placed.order.order.id,
                OrderStatus::Completed,
                &TransitionInput::default()
            )
            .await
            .is_err()
    );
    assert_eq!(count().await, before);
    // Every order's events are numbered without gaps and match its history.
    shop.assert_check_clean().await;
}

async fn event_types_filter_what_an_endpoint_gets(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    subscribe(
        &shop,
        &receiver,
        false,
        Some(vec!["order.paid", "order.expired"]),
    )
    .await;
    let dispatcher = dispatcher(&shop.ordo);
    let p = shop.product(10, 100).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    shop.pay(&placed).await;
    drain(&dispatcher).await;
    let kinds: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|r| r.kind().to_owned())
        .collect();
    assert_eq!(kinds, ["order.paid"]);
    // Unknown types are refused, naming the field.
    let refused = shop
        .ordo
        .create_endpoint(
            shop.staff(),
            &NewEndpoint {
                url: receiver.url.clone(),
                event_types: Some(vec!["order.paid".into(), "order.deleted".into()]),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(refused, Err(Error::Validation { field, .. }) if field == "event_types[1]"));
}

async fn a_slow_receiver_cannot_hold_a_worker(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    subscribe(&shop, &receiver, false, None).await;
    let dispatcher = dispatcher(&shop.ordo); // 2 s timeout
    let p = shop.product(10, 100).await;
    shop.order(&[(p.id, 1)]).await;
    receiver.then(&[Reply::Slow(Duration::from_secs(10))]);
    let started = std::time::Instant::now();
    assert_eq!(drain(&dispatcher).await, 1);
    // The worker let go before the receiver would have answered (the bound is the
    // receiver's own delay, not a guess at how fast this machine is).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let deliveries = deliveries(&shop, 10).await;
    assert_eq!(deliveries[0].status, "failed");
    let error = deliveries[0].attempts[0].error.clone().unwrap_or_default();
    assert!(error.contains("2 s"), "{error}");
}

/// Three dispatchers, two in this process and one in "another" (its own pool and handle on
/// the same database), drain one backlog at once against a slow receiver, in small rounds:
/// every event arrives exactly once, each delivery with one attempt. None takes a delivery
/// another holds (the claim skips locked rows and leases what it takes).
async fn dispatchers_of_several_processes_share_the_work(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    subscribe(&shop, &receiver, false, None).await;
    let p = shop.product(1_000, 100).await;
    const ORDERS: usize = 36;
    for _ in 0..ORDERS {
        shop.order(&[(p.id, 1)]).await;
    }
    receiver.then(&[Reply::Slow(Duration::from_millis(150)); ORDERS]);
    let other_db = ordo::db::Db::connect(&shop.database.url, 4)
        .await
        .expect("connect");
    let other = Ordo::new(other_db, test_policy(), ordo::Clock::fixed(T0));
    let small = |ordo: &Ordo| {
        Dispatcher::new(
            ordo.clone(),
            DispatchConfig {
                timeout: Duration::from_secs(5),
                allow_private: true,
                batch: 4,
                ..DispatchConfig::default()
            },
        )
        .expect("dispatcher")
    };
    let (a, b, c) = (small(&shop.ordo), small(&shop.ordo), small(&other));
    let (na, nb, nc) = tokio::join!(drain(&a), drain(&b), drain(&c));
    // Whatever one skipped while another held it is delivered by the end.
    let rest = drain(&a).await;
    assert_eq!(na + nb + nc + rest, ORDERS, "{na} {nb} {nc} {rest}");
    assert!(
        [na, nb, nc].iter().filter(|&&n| n > 0).count() >= 2,
        "the work was not shared: {na} {nb} {nc}"
    );
    let received = receiver.received();
    let mut ids: Vec<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), ORDERS, "some event arrived twice");
    assert_eq!(received.len(), ORDERS, "some event arrived twice");
    let deliveries = deliveries(&shop, 100).await;
    assert_eq!(deliveries.len(), ORDERS);
    for d in &deliveries {
        assert_eq!(d.status, "succeeded", "{d:?}");
        assert_eq!(d.attempt_count, 1, "{d:?}");
    }
}

/// One write of more events than one statement takes (SQLite binds 500 a statement):
/// every event is stored once with its data as given, and each gets its delivery.
async fn a_thousand_events_in_one_write(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let receiver = Receiver::start().await;
    subscribe(&shop, &receiver, false, None).await;
    const EVENTS: i64 = 1_234;
    let ids: Vec<String> = (0..EVENTS).map(|_| ordo::events::new_event_id()).collect();
    let data: Vec<Box<serde_json::value::RawValue>> = (0..EVENTS)
        .map(|i| {
            serde_json::value::to_raw_value(&serde_json::json!({
                "product": {"id": i, "name": format!("n\u{1f}\"{i}\u{e9}")}
            }))
            .unwrap()
        })
        .collect();
    let rows: Vec<ordo::db::events::EventInsert<'_>> = (0..EVENTS as usize)
        .map(|i| ordo::db::events::EventInsert {
            event_id: &ids[i],
            kind: "product.back_in_stock",
            order_id: None,
            product_id: Some(i as i64),
            seq: None,
            data: &data[i],
        })
        .collect();
    let mut tx = shop.ordo.db.write_tx().await.unwrap();
    ordo::db::events::insert(&mut tx, shop.ordo.db.dialect(), &rows, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let log = shop
        .ordo
        .events(
            shop.staff(),
            &ordo::events::EventFilter {
                limit: 2_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(log.len() as i64, EVENTS);
    for (i, event) in log.iter().enumerate() {
        assert_eq!(event.id, ids[i]);
        assert_eq!(event.data["product"]["id"], i as i64);
        assert_eq!(
            event.data["product"]["name"],
            format!("n\u{1f}\"{i}\u{e9}"),
            "{event:?}"
        );
    }
    let dispatcher = dispatcher(&shop.ordo);
    assert_eq!(drain(&dispatcher).await as i64, EVENTS);
    assert_eq!(receiver.accepted().len() as i64, EVENTS);
}

/// The sweep's batch path reads the cancelled orders, their items and payments back in
/// bulk (on SQLite as one JSON array per kind): each `order.expired` must still carry the
/// order exactly as `GET /orders/{id}` shows it, text and nulls and all.
async fn a_swept_order_is_in_its_event_as_the_api_shows_it(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let a = shop.product(10, 1_999).await;
    let b = shop.product(10, 250).await;
    let note = "leave it with the neighbour \"Zhang\" \\ 邻居 🎁\nsecond line\ttab";
    let mut noted = shop.new_order(&[(b.id, 1), (a.id, 2)]);
    noted.note = Some(note.to_owned());
    let noted = shop
        .ordo
        .place_order(shop.owner(), &noted)
        .await
        .expect("place order");
    let plain = shop.order(&[(a.id, 3)]).await;
    shop.ordo.clock.set(T0 + 31 * MINUTE);
    assert_eq!(scheduled_sweep(&shop).await.cancelled, 2);
    for (order_id, released) in [
        (
            noted.order.order.id,
            serde_json::json!([{"product_id": a.id, "quantity": 2}, {"product_id": b.id, "quantity": 1}]),
        ),
        (
            plain.order.order.id,
            serde_json::json!([{"product_id": a.id, "quantity": 3}]),
        ),
    ] {
        let events = events_of(&shop, ordo::events::EventType::OrderExpired, order_id).await;
        assert_eq!(events.len(), 1, "one order.expired for order {order_id}");
        let shown = shop.ordo.order(shop.staff(), order_id).await.unwrap();
        assert_eq!(
            events[0].data["order"],
            serde_json::to_value(&shown).unwrap()
        );
        assert_eq!(events[0].data["seq"], 2);
        assert_eq!(events[0].data["units_released"], released);
    }
    let shown = shop
        .ordo
        .order(shop.staff(), noted.order.order.id)
        .await
        .unwrap();
    assert_eq!(shown.order.note.as_deref(), Some(note));
    assert_eq!(shown.items.len(), 2);
    assert_eq!(
        shown.payments[0].status,
        ordo::domain::PaymentStatus::Expired
    );
    shop.assert_check_clean().await;
}
