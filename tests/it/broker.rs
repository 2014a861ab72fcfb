//! Events published to the real RabbitMQ (127.0.0.1:5672): every event arrives on a queue
//! bound to the `ordo.events` exchange, with its type as routing key and its id as
//! message id, even when the broker's application is stopped and started in the middle
//! of the run. Skipped with a note when RabbitMQ is not running, unless
//! `ORDO_REQUIRE_RABBITMQ=1` (the CI sets it), which makes that a failure.

use crate::helpers::{Backend, TestShop};
use crate::on_both_databases;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use ordo::events::dispatch::{DispatchConfig, EXCHANGE};
use ordo::scheduler::Shutdown;
use ordo::{Clock, Ordo};
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

on_both_databases!(events_reach_rabbitmq_across_a_broker_restart);

async fn connect() -> Option<lapin::Connection> {
    lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .ok()
}

/// Connects, retrying while the broker restarts.
async fn connect_patiently() -> lapin::Connection {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(connection) = connect().await {
            return connection;
        }
        assert!(Instant::now() < until, "RabbitMQ did not come back");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("run rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The two databases' runs take turns: each restarts the one broker.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn events_reach_rabbitmq_across_a_broker_restart(backend: Backend) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(connection) = connect().await else {
        assert!(
            std::env::var("ORDO_REQUIRE_RABBITMQ").is_err(),
            "RabbitMQ is not running on 127.0.0.1:5672"
        );
        eprintln!("skipped: rabbitmq missing (start it with rabbitmq-server -detached)");
        return;
    };
    let shop = TestShop::new(backend).await;
    // The broker's retries are timed by the real clock.
    let ordo = Ordo::new(shop.ordo.db.clone(), shop.ordo.policy, Clock::system());
    let queue = format!("ordo-test-{}", rand::random::<u32>());
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            EXCHANGE.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    drop(channel);
    drop(connection);

    let shutdown = Shutdown::new();
    let dispatcher = tokio::spawn(ordo::events::dispatch::run(
        ordo.clone(),
        DispatchConfig {
            amqp_url: Some(AMQP_URL.to_owned()),
            timeout: Duration::from_secs(3),
            poll_interval: Duration::from_millis(200),
            ..DispatchConfig::default()
        },
        shutdown.clone(),
    ));
    // The broker subscribes (an endpoint of kind amqp) when the dispatcher starts; events
    // from then on are published.
    let until = Instant::now() + Duration::from_secs(10);
    while !ordo
        .endpoints(shop.staff())
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "amqp")
    {
        assert!(
            Instant::now() < until,
            "the broker endpoint was not registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = shop.product(10_000, 100).await;
    let placing = {
        let ordo = ordo.clone();
        let new = shop.new_order(&[(p.id, 1)]);
        let actor = shop.owner();
        tokio::spawn(async move {
            for _ in 0..150 {
                ordo.place_order(actor, &new).await.expect("place");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl(&["start_app"]);
    placing.await.unwrap();

    // Wait until the broker has confirmed every event.
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let open = shop
            .count("SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'succeeded'")
            .await;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{open} events never confirmed by the broker"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.trigger();
    dispatcher.await.unwrap();
    let failed_attempts = shop
        .count("SELECT COUNT(*) FROM webhook_attempts WHERE error IS NOT NULL")
        .await;

    // Every event is on the queue, with its type as routing key.
    let events: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT event_id, type FROM events")
            .fetch_all(shop.ordo.db.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(events.len() >= 150);
    let connection = connect_patiently().await;
    let channel = connection.create_channel().await.unwrap();
    let mut seen = HashSet::new();
    while let Some(message) = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let id = message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string())
            .expect("message_id");
        assert_eq!(
            message.delivery.properties.delivery_mode(),
            &Some(2),
            "persistent"
        );
        assert_eq!(
            events.get(&id).map(String::as_str),
            Some(message.delivery.routing_key.as_str()),
            "routing key is the type"
        );
        let body: serde_json::Value = serde_json::from_slice(&message.delivery.data).unwrap();
        assert_eq!(body["id"], id.as_str());
        seen.insert(id);
    }
    let missing: Vec<_> = events.keys().filter(|id| !seen.contains(*id)).collect();
    if !missing.is_empty() {
        let attempts: Vec<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT e.event_id, a.attempted_at, a.error FROM webhook_attempts a
             JOIN webhook_deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_pk
             ORDER BY a.attempted_at",
        )
        .fetch_all(shop.ordo.db.pool())
        .await
        .unwrap();
        let first_error = attempts.iter().find(|a| a.2.is_some()).map(|a| a.1);
        let last_error = attempts.iter().rev().find(|a| a.2.is_some()).map(|a| a.1);
        eprintln!("errors from {first_error:?} to {last_error:?}");
        for a in attempts.iter().filter(|a| missing.contains(&&a.0)) {
            eprintln!("attempt of a missing event {a:?}");
        }
    }
    assert!(
        missing.is_empty(),
        "{} events missing from the queue: {missing:?}",
        missing.len()
    );
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    eprintln!(
        "broker test {backend:?}: {} events, all on the queue; {failed_attempts} attempts failed while the broker was stopped",
        events.len()
    );
    assert!(failed_attempts > 0, "the broker restart was felt");
}
