//! What Prometheus sees: every metric the alert rules (`deploy/prometheus/`) and the
//! dashboard (`deploy/grafana/`) name is in a running ordo's `/metrics`, and the gauges
//! read from the database say what the shop holds.

use crate::helpers::{Backend, TestShop};
use crate::on_both_databases;
use crate::receiver::Receiver;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

on_both_databases!(the_rules_find_every_metric_and_the_gauges_tell_the_truth);

/// The `ordo_…` names a rule or a dashboard panel reads.
fn names_in(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let name = regex::Regex::new(r"\bordo_[a-z0-9_]*[a-z0-9]").unwrap();
    name.find_iter(&text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// The series names in a scrape.
fn series_in(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The value of an unlabelled series.
fn value(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from the scrape"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn the_rules_find_every_metric_and_the_gauges_tell_the_truth(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let product = shop.product(100, 250).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Orders are due at once and nothing sweeps them but the command below; events are
    // delivered to a receiver in this process.
    let env = [
        ("ORDO_DATABASE_URL", shop.database.url.as_str()),
        ("ORDO_UNPAID_TIMEOUT_MINUTES", "0"),
        ("ORDO_PAYMENT_TTL_MINUTES", "0"),
        ("ORDO_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("ORDO_RATE_LIMIT_PER_SECOND", "0"),
        ("ORDO_MAX_PENDING_ORDERS_PER_CUSTOMER", "0"),
        ("ORDO_LOG", "warn"),
    ];
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args([
                "serve",
                "--no-scheduler",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .envs(env)
            .env_remove("ORDO_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ordo serve"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::client();
    let scrape = || async {
        let response = client.get(format!("{base}/metrics")).send().await;
        match response {
            Ok(r) if r.status().is_success() => Some(r.text().await.unwrap()),
            _ => None,
        }
    };
    let started = Instant::now();
    let fresh = loop {
        if let Some(text) = scrape().await {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ordo serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(value(&fresh, "ordo_database_up"), 1.0);
    assert_eq!(value(&fresh, "ordo_sweep_interval_seconds"), 60.0);
    assert_eq!(
        value(&fresh, "ordo_sweep_last_finished_timestamp_seconds"),
        0.0,
        "no sweep ever finished"
    );

    let receiver = Receiver::start().await;
    let call = |method: reqwest::Method, path: &str, token: &str, body: Value| {
        let request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, endpoint) = call(
        reqwest::Method::POST,
        "/api/v1/webhook-endpoints",
        &shop.staff_token,
        json!({"url": receiver.url}),
    )
    .await;
    assert_eq!(status, 201, "{endpoint}");
    let mut orders = Vec::new();
    for _ in 0..3 {
        let (status, placed) = call(
            reqwest::Method::POST,
            "/api/v1/orders",
            &shop.customer_token,
            json!({"items": [{"product_id": product.id, "quantity": 2}]}),
        )
        .await;
        assert_eq!(status, 201, "{placed}");
        orders.push(placed["order"]["id"].as_i64().unwrap());
    }
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("/api/v1/orders/{}/cancel", orders[0]),
        &shop.customer_token,
        json!({"reason": "changed my mind"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    while receiver.accepted().len() < 4 {
        assert!(started.elapsed() < Duration::from_secs(30), "no deliveries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two orders wait for a sweep; one delivery is made dead by hand.
    let text = scrape().await.expect("scrape");
    assert_eq!(value(&text, "ordo_orders_past_deadline"), 2.0, "{text}");
    assert!(value(&text, "ordo_orders_past_deadline_max_seconds") >= 0.0);
    assert_eq!(value(&text, "ordo_webhook_deliveries_dead"), 0.0);
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL
         WHERE id = (SELECT MIN(id) FROM webhook_deliveries)",
    )
    .execute(shop.ordo.db.pool())
    .await
    .unwrap();
    let text = scrape().await.expect("scrape");
    assert_eq!(value(&text, "ordo_webhook_deliveries_dead"), 1.0);

    // A sweep from cron (another process) is seen by the gauges.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["cancel-unpaid-orders", "--json"])
        .envs(env)
        .env_remove("ORDO_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = scrape().await.expect("scrape");
    assert_eq!(value(&text, "ordo_orders_past_deadline"), 0.0, "{text}");
    assert_eq!(value(&text, "ordo_orders_past_deadline_max_seconds"), 0.0);
    let finished = value(&text, "ordo_sweep_last_finished_timestamp_seconds");
    assert!(
        finished >= before - 1.0 && finished < before + 60.0,
        "{finished} vs {before}"
    );
    assert_eq!(value(&text, "ordo_sweep_last_run_errors"), 0.0);

    // A run with failures is what the newest run that is over says; a dry run after it
    // does not hide it.
    for (dry_run, errors) in [(false, 2), (true, 5)] {
        sqlx::query(
            "INSERT INTO sweep_runs (trigger, actor, dry_run, timeout_minutes, cutoff, state,
                started_at, heartbeat_at, finished_at, errors)
             VALUES ('cli', 'cli:test', $1, 0, 0, 'finished', 1, 1, 1, $2)",
        )
        .bind(dry_run)
        .bind(errors)
        .execute(shop.ordo.db.pool())
        .await
        .unwrap();
    }
    let text = scrape().await.expect("scrape");
    assert_eq!(value(&text, "ordo_sweep_last_run_errors"), 2.0);
    assert_eq!(
        value(&text, "ordo_sweep_last_finished_timestamp_seconds"),
        0.001
    );

    // Every name a rule or a panel reads is there.
    let scraped = series_in(&text);
    let mut wanted = names_in("deploy/prometheus/ordo-alerts.yml");
    let rules = wanted.len();
    wanted.extend(names_in("deploy/grafana/ordo.json"));
    assert!(rules >= 15 && wanted.len() >= 30, "{wanted:?}");
    let missing: Vec<&String> = wanted.iter().filter(|n| !scraped.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named but not scraped: {missing:?}\n{text}"
    );
}
