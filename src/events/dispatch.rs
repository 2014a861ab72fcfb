//! The dispatcher: claims due deliveries, posts them to webhook endpoints with the Standard
//! Webhooks headers (or publishes them to the broker), records every attempt and
//! reschedules failures: after about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and
//! 24 h, with jitter, then `dead`; `Retry-After` on 429 and 503 is honoured; redirects are
//! not followed; 410 disables the endpoint. Several dispatchers (processes) share the work:
//! a claim leases each delivery for one attempt. Woken by PostgreSQL `LISTEN`, by this
//! process's own commits, and by a poll.

use super::signing;
use crate::Ordo;
use crate::db::webhooks::{self as store, DueDelivery};
use crate::domain::Millis;
use crate::error::{Error, Result};
use crate::scheduler::Shutdown;
use rand::Rng;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Delays after the 1st, 2nd, … failed attempt; after the last, the delivery is dead.
pub const RETRY_SCHEDULE_S: [u64; 9] = [
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
];
/// The broker is retried until it confirms: these delays, then the last one again.
const BROKER_RETRY_S: [u64; 5] = [1, 2, 5, 10, 30];
/// Most of an answer kept.
pub const ANSWER_BYTES: usize = 1024;
/// The exchange every event is published to.
pub const EXCHANGE: &str = "ordo.events";

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How long a receiver has to answer (body included).
    pub timeout: Duration,
    /// Whether receivers may be on private addresses (development, tests).
    pub allow_private: bool,
    /// The broker, if events are published to one.
    pub amqp_url: Option<String>,
    /// Deliveries claimed (and attempted at once) per round.
    pub batch: i64,
    /// Rounds under way at once.
    pub workers: usize,
    /// How long a woken worker waits before it claims, so that the events of many commits
    /// go out in one round (a round costs a few statements, whatever its size).
    pub linger: Duration,
    /// Poll at least this often, for retries coming due and for other processes' writes
    /// when no notification comes.
    pub poll_interval: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            timeout: Duration::from_secs(15),
            allow_private: false,
            amqp_url: None,
            batch: 256,
            workers: 4,
            linger: Duration::from_millis(100),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl DispatchConfig {
    pub fn from_settings(settings: &crate::Settings) -> DispatchConfig {
        DispatchConfig {
            timeout: Duration::from_secs(settings.webhook_timeout_seconds),
            allow_private: settings.webhook_allow_private,
            amqp_url: settings.events_amqp_url.clone(),
            ..DispatchConfig::default()
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone)]
struct Outcome {
    http_status: Option<u16>,
    error: Option<String>,
    response: Option<String>,
    retry_after: Option<Duration>,
    succeeded: bool,
    gone: bool,
}

/// The webhook client's resolver: hickory ([`super::resolver`]), not the C library. Unless
/// private targets are allowed it never hands the client an address a webhook must not
/// reach, so a host that resolved to a public address when the endpoint was made cannot be
/// pointed at a private one later (DNS rebinding).
struct Resolver {
    public_only: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let public_only = self.public_only;
        Box::pin(async move {
            let found: Vec<SocketAddr> = super::resolver::lookup(&host)
                .await?
                .into_iter()
                .filter(|ip| !(public_only && super::endpoints::is_private(*ip)))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The dispatcher of one process.
pub struct Dispatcher {
    ordo: Ordo,
    config: DispatchConfig,
    client: reqwest::Client,
    broker: Mutex<Option<lapin::Channel>>,
    /// Kept alive with its channel.
    broker_connection: Mutex<Option<lapin::Connection>>,
    /// Whether any endpoint this process delivers to exists, and when that was read: with
    /// none, a wake-up (every commit that wrote events) costs no query.
    endpoints_seen: std::sync::Mutex<(bool, Option<Instant>)>,
    /// Whether the broker's endpoint is known to exist.
    registered: std::sync::atomic::AtomicBool,
    /// Held while registering it, so that this process's workers make it once.
    registering: Mutex<()>,
}

impl Dispatcher {
    pub fn new(ordo: Ordo, config: DispatchConfig) -> Result<Arc<Dispatcher>> {
        crate::install_tls_provider();
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("ordo/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(Resolver {
                public_only: !config.allow_private,
            }));
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the webhook client: {e}")))?;
        Ok(Arc::new(Dispatcher {
            ordo,
            config,
            client,
            broker: Mutex::new(None),
            broker_connection: Mutex::new(None),
            endpoints_seen: std::sync::Mutex::new((false, None)),
            registered: std::sync::atomic::AtomicBool::new(false),
            registering: Mutex::new(()),
        }))
    }

    /// The endpoint kinds this process delivers to.
    fn kinds(&self) -> &'static str {
        if self.config.amqp_url.is_some() {
            r#"["webhook","amqp"]"#
        } else {
            r#"["webhook"]"#
        }
    }

    /// Makes sure the broker has its endpoint (kind `amqp`), so that events fan out to it;
    /// once that is known, this costs nothing.
    pub async fn register_broker(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.registered.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(url) = &self.config.amqp_url else {
            self.registered.store(true, Ordering::Release);
            return Ok(());
        };
        let _one_at_a_time = self.registering.lock().await;
        if self.registered.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = self.ordo.clock.now();
        let mut tx = self.ordo.db.write_tx().await?;
        if store::broker_endpoint(&mut tx).await?.is_none() {
            store::insert_endpoint(
                &mut tx,
                &store::NewEndpointRow {
                    kind: "amqp",
                    url: &crate::config::redact_url(url),
                    description: Some("the message broker: exchange ordo.events"),
                    event_types: None,
                    ordered: false,
                    secret: &signing::generate_secret(),
                    now,
                },
            )
            .await?;
        }
        tx.commit().await?;
        self.registered.store(true, Ordering::Release);
        Ok(())
    }

    /// One round: claims due deliveries, attempts them all at once, records every attempt.
    /// Returns how many were attempted.
    pub async fn dispatch_once(self: &Arc<Self>) -> Result<usize> {
        if !self.any_endpoint().await? {
            return Ok(0);
        }
        let now = self.ordo.clock.now();
        // Long enough for the attempt (bounded by the timeout) and its recording; a
        // dispatcher that died mid-attempt holds the delivery no longer than this.
        let lease = now + self.config.timeout.as_millis() as i64 + 5_000;
        let dialect = self.ordo.db.dialect();
        let mut tx = self.ordo.db.write_tx().await?;
        let due = store::claim_due(
            &mut tx,
            dialect,
            self.kinds(),
            self.config.batch,
            lease,
            now,
        )
        .await?;
        tx.commit().await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut attempts = tokio::task::JoinSet::new();
        for delivery in due {
            let me = self.clone();
            attempts.spawn(async move {
                let started = Instant::now();
                let at = me.ordo.clock.now();
                let outcome = if delivery.kind == "amqp" {
                    me.publish(&delivery).await
                } else {
                    me.post(&delivery).await
                };
                (delivery, outcome, at, started.elapsed())
            });
        }
        let mut rows = Vec::new();
        let mut done = 0;
        let mut any_gone = false;
        while let Some(joined) = attempts.join_next().await {
            let Ok((delivery, outcome, at, took)) = joined else {
                continue;
            };
            done += 1;
            any_gone |= outcome.gone;
            rows.push(self.settle(&delivery, &outcome, at, took));
        }
        let mut tx = self.ordo.db.write_tx().await?;
        store::record_attempts(
            &mut tx,
            dialect,
            &serde_json::to_string(&rows).unwrap_or_default(),
            any_gone,
            self.ordo.clock.now(),
        )
        .await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Whether there is an enabled endpoint to deliver to, read at most once per poll
    /// interval.
    async fn any_endpoint(&self) -> Result<bool> {
        let fresh = {
            let seen = self
                .endpoints_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            seen.1
                .filter(|at| at.elapsed() < self.config.poll_interval)
                .map(|_| seen.0)
        };
        if let Some(any) = fresh {
            return Ok(any);
        }
        let mut conn = self.ordo.db.pool().acquire().await?;
        let any =
            store::any_enabled_endpoint(&mut conn, self.ordo.db.dialect(), self.kinds()).await?;
        *self
            .endpoints_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (any, Some(Instant::now()));
        Ok(any)
    }

    /// What becomes of a delivery after an attempt, as a row for `record_attempts`.
    fn settle(
        &self,
        d: &DueDelivery,
        outcome: &Outcome,
        at: Millis,
        took: Duration,
    ) -> serde_json::Value {
        let endpoint = d.endpoint_id.to_string();
        let attempt_number = d.attempts + 1;
        let (status, next) = if outcome.succeeded {
            ("succeeded", None)
        } else if outcome.gone {
            ("dead", None)
        } else if d.kind == "amqp" {
            let i = (attempt_number as usize - 1).min(BROKER_RETRY_S.len() - 1);
            ("failed", Some(at + jittered(BROKER_RETRY_S[i] * 1000)))
        } else if let Some(delay) = RETRY_SCHEDULE_S.get(attempt_number as usize - 1) {
            let delay_ms = match outcome.retry_after {
                Some(after) => (after.as_millis() as i64).clamp(1000, 24 * 3_600_000),
                None => jittered(delay * 1000),
            };
            ("failed", Some(at + delay_ms))
        } else {
            ("dead", None)
        };
        // Every outcome of this endpoint exists from its first attempt on, so that
        // `increase()` counts its first dead delivery too.
        for outcome in ["succeeded", "failed", "dead"] {
            metrics::counter!("ordo_webhook_deliveries_total", "endpoint" => endpoint.clone(), "outcome" => outcome)
                .increment(u64::from(outcome == status));
        }
        metrics::histogram!("ordo_webhook_delivery_duration_seconds", "endpoint" => endpoint)
            .record(took.as_secs_f64());
        if outcome.succeeded {
            metrics::histogram!("ordo_event_delivery_lag_seconds")
                .record((at + took.as_millis() as i64 - d.event_created_at).max(0) as f64 / 1000.0);
        } else {
            tracing::debug!(delivery = d.id, endpoint = d.endpoint_id, status, error = ?outcome.error, "delivery attempt failed");
        }
        json!({
            "delivery_id": d.id,
            "endpoint_id": d.endpoint_id,
            "status": status,
            "next_attempt_at": next,
            "attempted_at": at,
            "duration_ms": took.as_millis() as i64,
            "http_status": outcome.http_status,
            "error": outcome.error,
            "response": outcome.response,
            "disable": outcome.gone,
        })
    }

    /// One webhook attempt.
    async fn post(&self, d: &DueDelivery) -> Outcome {
        let failed = |error: String| Outcome {
            http_status: None,
            error: Some(error),
            response: None,
            retry_after: None,
            succeeded: false,
            gone: false,
        };
        // Checked again at delivery time: the host may resolve elsewhere by now. Names go
        // through the resolver that drops private addresses; literal addresses are here.
        if !self.config.allow_private
            && let Err(err) = super::endpoints::check_url("url", &d.url, false).await
        {
            return failed(format!("refused: {err}"));
        }
        let now = self.ordo.clock.now();
        let body = body_of(d);
        let mut keys = Vec::with_capacity(2);
        for secret in std::iter::once(Some(&d.secret)).chain(std::iter::once(
            d.previous_secret
                .as_ref()
                .filter(|_| d.previous_secret_until.is_some_and(|until| until > now)),
        )) {
            if let Some(Ok(key)) = secret.map(|s| signing::key_of(s)) {
                keys.push(key);
            }
        }
        // The attempt's own time, from the wall clock whatever clock ordo runs on:
        // receivers check it against theirs.
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signing::signature_header(&keys, &d.event_id, timestamp, body.as_bytes());
        let sent = self
            .client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) if err.is_timeout() => {
                return failed(format!(
                    "no answer within {} s",
                    self.config.timeout.as_secs()
                ));
            }
            Err(err) if err.is_connect() => {
                return failed(format!("could not connect: {}", root_cause(&err)));
            }
            Err(err) => return failed(format!("request failed: {}", root_cause(&err))),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|_| status.as_u16() == 429 || status.as_u16() == 503)
            .map(Duration::from_secs);
        let mut answer = Vec::new();
        let mut read_error = None;
        while answer.len() < ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(err) => {
                    read_error = Some(if err.is_timeout() {
                        format!(
                            "the answer did not finish within {} s",
                            self.config.timeout.as_secs()
                        )
                    } else {
                        format!("reading the answer failed: {}", root_cause(&err))
                    });
                    break;
                }
            }
        }
        answer.truncate(ANSWER_BYTES);
        let text = String::from_utf8_lossy(&answer)
            .replace('\0', "")
            .to_string();
        let succeeded = status.is_success();
        Outcome {
            http_status: Some(status.as_u16()),
            error: if succeeded {
                None
            } else if status.is_redirection() {
                Some(format!("{status}: redirects are not followed"))
            } else {
                Some(read_error.unwrap_or_else(|| status.to_string()))
            },
            response: Some(text),
            retry_after,
            succeeded,
            gone: status.as_u16() == 410,
        }
    }

    /// One broker attempt: published persistent to `ordo.events` with the type as routing
    /// key and the event id as message id, confirmed by the broker.
    async fn publish(&self, d: &DueDelivery) -> Outcome {
        let result = async {
            let channel = self.broker_channel().await?;
            let body = body_of(d);
            let properties = lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(d.event_id.clone().into())
                .with_content_type("application/json".into())
                .with_type(d.event_type.clone().into())
                .with_timestamp((d.event_created_at / 1000) as u64);
            let confirm = tokio::time::timeout(self.config.timeout, async {
                channel
                    .basic_publish(
                        EXCHANGE.into(),
                        d.event_type.clone().into(),
                        lapin::options::BasicPublishOptions::default(),
                        body.as_bytes(),
                        properties,
                    )
                    .await?
                    .await
            })
            .await
            .map_err(|_| "the broker did not confirm in time".to_owned())?
            .map_err(|e| e.to_string())?;
            if confirm.is_ack() {
                Ok(())
            } else {
                Err("the broker refused the message (nack)".to_owned())
            }
        }
        .await;
        match result {
            Ok(()) => Outcome {
                http_status: None,
                error: None,
                response: None,
                retry_after: None,
                succeeded: true,
                gone: false,
            },
            Err(error) => {
                *self.broker.lock().await = None;
                *self.broker_connection.lock().await = None;
                Outcome {
                    http_status: None,
                    error: Some(error),
                    response: None,
                    retry_after: None,
                    succeeded: false,
                    gone: false,
                }
            }
        }
    }

    /// The broker channel, connecting (and declaring the exchange) when there is none.
    async fn broker_channel(&self) -> std::result::Result<lapin::Channel, String> {
        let mut channel = self.broker.lock().await;
        if let Some(ch) = channel.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let url = self
            .config
            .amqp_url
            .as_deref()
            .ok_or("no broker configured")?;
        let connection = tokio::time::timeout(
            self.config.timeout,
            lapin::Connection::connect(url, lapin::ConnectionProperties::default()),
        )
        .await
        .map_err(|_| "could not reach the broker in time".to_owned())?
        .map_err(|e| format!("could not connect to the broker: {e}"))?;
        let ch = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        ch.exchange_declare(
            EXCHANGE.into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        *channel = Some(ch.clone());
        *self.broker_connection.lock().await = Some(connection);
        Ok(ch)
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `ms` give or take a tenth, so that many failed deliveries do not all retry at once.
pub(crate) fn jittered(ms: u64) -> i64 {
    let spread = (ms / 10).max(1);
    let low = ms.saturating_sub(spread);
    rand::rng().random_range(low..=ms + spread) as i64
}

/// Runs the dispatcher until `shutdown`: [`DispatchConfig::workers`] rounds at a time, so
/// that one slow receiver or one commit does not hold up the rest. The attempts in hand
/// are finished and recorded.
pub async fn run(ordo: Ordo, config: DispatchConfig, shutdown: Shutdown) {
    let dispatcher = match Dispatcher::new(ordo.clone(), config.clone()) {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(error = %err, "dispatcher not started");
            return;
        }
    };
    let wake = ordo.outbox();
    let _running = wake.dispatching();
    if ordo.db.listen_url().is_some() {
        tokio::spawn(listen(ordo.db.clone(), wake.clone(), shutdown.clone()));
    }
    tracing::info!(
        broker = config.amqp_url.is_some(),
        workers = config.workers,
        "dispatcher started"
    );
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.workers.max(1) {
        workers.spawn(work(dispatcher.clone(), wake.clone(), shutdown.clone()));
    }
    while workers.join_next().await.is_some() {}
    tracing::info!("dispatcher stopped");
}

/// One worker of the dispatcher: a round, then another at once if it was full, else a
/// wait for a wake-up or the poll.
async fn work(dispatcher: Arc<Dispatcher>, wake: Arc<super::Wake>, shutdown: Shutdown) {
    let config = &dispatcher.config;
    let mut failures = 0u32;
    while !shutdown.is_triggered() {
        if !dispatcher.ordo.db.is_ready() {
            // No primary: pause until one is back.
            tokio::select! {
                _ = tokio::time::sleep(config.poll_interval) => continue,
                _ = shutdown.wait() => break,
            }
        }
        if let Err(err) = dispatcher.register_broker().await {
            tracing::warn!(error = %err, "could not register the broker endpoint");
        }
        let pause = match dispatcher.dispatch_once().await {
            Ok(n) if n as i64 >= config.batch => {
                failures = 0;
                // More is due: another worker may help.
                wake.wake();
                continue;
            }
            Ok(_) => {
                failures = 0;
                config.poll_interval
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %err, "dispatcher round failed");
                Duration::from_millis(200 * u64::from(failures.min(25)))
            }
        };
        tokio::select! {
            _ = wake.notified() => {
                tokio::select! {
                    _ = tokio::time::sleep(config.linger) => {}
                    _ = shutdown.wait() => break,
                }
            }
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => break,
        }
    }
}

/// Forwards PostgreSQL notifications on `ordo_deliveries` to `wake`, reconnecting (to the
/// current primary) as needed.
async fn listen(db: crate::db::Db, wake: Arc<super::Wake>, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        let Some(url) = db.listen_url() else { return };
        let listened = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen("ordo_deliveries").await?;
            loop {
                listener.recv().await?;
                wake.wake();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = listened => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "delivery notifications lost; reconnecting");
                }
            }
            _ = shutdown.wait() => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The body a delivery carries: its event's envelope, the same bytes for every attempt.
fn body_of(d: &DueDelivery) -> String {
    super::Event::body(&crate::db::events::EventRow {
        id: d.event_pk,
        event_id: d.event_id.clone(),
        kind: d.event_type.clone(),
        order_id: d.order_id,
        product_id: None,
        seq: d.seq,
        data: d.data.clone(),
        created_at: d.event_created_at,
    })
}
