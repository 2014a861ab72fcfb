//! Logging through `tracing`, to stderr: text on a terminal, JSON with `log_format = json`.
//! Metrics for Prometheus: what this process counts, and gauges read from the database
//! when `/metrics` is scraped (the alert rules in `deploy/prometheus/` read both).

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
    };
}

/// The process's Prometheus recorder, installed on first use. Library code records through
/// the `metrics` macros, which do nothing until a recorder is installed.
pub fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use std::sync::OnceLock;
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const SECONDS: &[f64] = &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe_metrics();
                    register_zeroes();
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "ordo_http_requests_total",
        "HTTP requests by method, route and status"
    );
    describe_histogram!(
        "ordo_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method and route"
    );
    describe_counter!("ordo_orders_placed_total", "Orders placed");
    describe_counter!(
        "ordo_order_transitions_total",
        "Order status changes by from and to status"
    );
    describe_counter!(
        "ordo_sweep_runs_total",
        "Unpaid-order sweep runs, by dry_run"
    );
    describe_counter!(
        "ordo_sweep_orders_cancelled_total",
        "Orders the sweep cancelled"
    );
    describe_counter!(
        "ordo_sweep_units_released_total",
        "Stock units the sweep released"
    );
    describe_counter!(
        "ordo_sweep_errors_total",
        "Orders the sweep failed to cancel"
    );
    describe_histogram!(
        "ordo_sweep_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of sweep runs"
    );
    describe_gauge!(
        "ordo_oldest_overdue_order_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest order the sweep would cancel now (0 when none)"
    );
    describe_gauge!(
        "ordo_late_payments_awaiting_refund",
        "Succeeded payments flagged refund_required"
    );
    describe_counter!(
        "ordo_late_payments_settled_total",
        "Late payments whose refund staff marked as settled"
    );
    describe_histogram!(
        "ordo_placement_batch_size",
        "Orders placed together in one transaction"
    );
    describe_histogram!(
        "ordo_placement_wait_seconds",
        metrics::Unit::Seconds,
        "How long an order waited in its lane for its batch to start"
    );
    describe_histogram!(
        "ordo_placement_batch_seconds",
        metrics::Unit::Seconds,
        "How long one placement batch took, its transaction and commit"
    );
    describe_counter!(
        "ordo_rate_limited_total",
        "Requests refused by the rate limiter, by client kind (token or address)"
    );
    describe_counter!(
        "ordo_webhook_deliveries_total",
        "Delivery attempts by endpoint and outcome (succeeded, failed, dead)"
    );
    describe_histogram!(
        "ordo_webhook_delivery_duration_seconds",
        metrics::Unit::Seconds,
        "How long one delivery attempt took, by endpoint"
    );
    describe_histogram!(
        "ordo_event_delivery_lag_seconds",
        metrics::Unit::Seconds,
        "From an event's commit to its successful delivery"
    );
    describe_counter!(
        "ordo_provider_requests_total",
        "Calls to payment providers by provider, operation (open, query, close, refund, refund_query) and outcome (ok, unreachable, error, unverifiable)"
    );
    describe_histogram!(
        "ordo_provider_request_duration_seconds",
        metrics::Unit::Seconds,
        "How long one call to a payment provider took, by provider and operation"
    );
    describe_counter!(
        "ordo_provider_notifications_total",
        "Notifications from payment providers by provider and outcome (applied, not_authentic, malformed, mismatch, unavailable, not_configured)"
    );
    describe_counter!(
        "ordo_payments_found_paid_total",
        "Payments a provider said were paid when asked (the notification was late or lost), by provider"
    );
    describe_counter!(
        "ordo_provider_refunds_refused_total",
        "Refunds a payment provider refused, by provider"
    );
    describe_counter!(
        "ordo_reconcile_payments_queried_total",
        "Questions the reconciliation job asked payment providers"
    );
    describe_counter!(
        "ordo_sweep_provider_queries_total",
        "Questions the sweep asked payment providers before cancelling"
    );
    describe_counter!(
        "ordo_sweep_orders_found_paid_total",
        "Orders the sweep found paid at their provider instead of cancelling them"
    );
    describe_counter!(
        "ordo_sweep_provider_closes_total",
        "Provider transactions the sweep closed before cancelling their orders"
    );
    describe_counter!(
        "ordo_sweep_orders_deferred_total",
        "Orders the sweep left pending because their provider could not answer"
    );
    describe_gauge!(
        "ordo_database_up",
        "1 when the database answered this scrape (within 3 s), else 0"
    );
    describe_gauge!(
        "ordo_orders_past_deadline",
        "Orders the sweep would cancel now: unpaid past their deadline, no open payment"
    );
    describe_gauge!(
        "ordo_orders_past_deadline_max_seconds",
        metrics::Unit::Seconds,
        "How far past its unpaid deadline the most overdue order is (0 when none)"
    );
    describe_gauge!(
        "ordo_webhook_deliveries_dead",
        "Webhook deliveries that gave up (dead), in the database"
    );
    describe_gauge!(
        "ordo_sweep_last_finished_timestamp_seconds",
        metrics::Unit::Seconds,
        "When the newest real sweep run (any process, any trigger) finished (0: never)"
    );
    describe_gauge!(
        "ordo_sweep_last_run_errors",
        "Orders that failed in the newest real sweep run that is over"
    );
    describe_gauge!(
        "ordo_sweep_interval_seconds",
        metrics::Unit::Seconds,
        "sweep_interval_seconds: how often sweeps are meant to run"
    );
    describe_gauge!(
        "ordo_backup_interval_seconds",
        metrics::Unit::Seconds,
        "backup_interval_minutes in seconds (0: no scheduled snapshots)"
    );
    describe_gauge!(
        "ordo_backup_last_success_timestamp_seconds",
        metrics::Unit::Seconds,
        "When the newest scheduled snapshot in backup_dir was completed (0: none)"
    );
    describe_counter!("ordo_backups_total", "Scheduled snapshots written");
    describe_counter!(
        "ordo_backup_failures_total",
        "Scheduled snapshots that failed"
    );
    describe_counter!(
        "ordo_payment_reminders_total",
        "order.payment_reminder events written"
    );
    describe_counter!(
        "ordo_database_failovers_total",
        "Times this process followed a new PostgreSQL primary"
    );
    describe_gauge!("ordo_build_info", "1, labelled with the running version");
    describe_gauge!(
        "ordo_events_oldest_undelivered_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest event an enabled endpoint has not received yet (0 when none)"
    );
}

/// The payment providers, their operations and the outcomes of a call, as
/// `ordo_provider_requests_total` labels them.
pub const PROVIDERS: &[&str] = &["wechatpay", "alipay", "stripe"];
pub const PROVIDER_OPERATIONS: &[&str] = &["open", "query", "close", "refund", "refund_query"];
pub const PROVIDER_OUTCOMES: &[&str] = &["ok", "unreachable", "error", "unverifiable"];

/// Every counter an alert rule or the dashboard reads that a quiet process would not have
/// written yet, at zero: the first scrape finds it, and `increase()` sees its first event
/// (Prometheus takes a series' first sample as its start, not as an increase).
fn register_zeroes() {
    use metrics::{counter, histogram};
    for dry_run in ["false", "true"] {
        counter!("ordo_sweep_runs_total", "dry_run" => dry_run).increment(0);
    }
    for client in ["token", "address"] {
        counter!("ordo_rate_limited_total", "client" => client).increment(0);
    }
    for name in [
        "ordo_orders_placed_total",
        "ordo_sweep_orders_cancelled_total",
        "ordo_sweep_orders_deferred_total",
        "ordo_sweep_units_released_total",
        "ordo_sweep_errors_total",
        "ordo_payment_reminders_total",
        "ordo_late_payments_settled_total",
        "ordo_database_failovers_total",
        "ordo_backups_total",
        "ordo_backup_failures_total",
    ] {
        counter!(name).increment(0);
    }
    for provider in PROVIDERS {
        for operation in PROVIDER_OPERATIONS {
            for outcome in PROVIDER_OUTCOMES {
                counter!("ordo_provider_requests_total", "provider" => *provider,
                    "operation" => *operation, "outcome" => *outcome)
                .increment(0);
            }
            let _ = histogram!("ordo_provider_request_duration_seconds",
                "provider" => *provider, "operation" => *operation);
        }
    }
    let _ = histogram!("ordo_sweep_duration_seconds", "dry_run" => "false");
    let _ = histogram!("ordo_placement_batch_size");
    metrics::gauge!("ordo_backup_last_success_timestamp_seconds").set(0.0);
    metrics::gauge!("ordo_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// How long the database may take to answer `/metrics`' questions: a scrape that waits
/// longer than Prometheus's timeout (10 s by default) loses every series.
const SCRAPE_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Reads the gauges that describe the shop rather than this process, from the database
/// (the same values whichever instance is scraped; rules take their `max`):
/// `ordo_database_up` first, and the rest only when it is 1.
pub async fn refresh_gauges(ordo: &crate::Ordo) {
    use metrics::gauge;
    let ping = tokio::time::timeout(SCRAPE_BUDGET, ordo.db.ping()).await;
    let up = ordo.db.is_ready() && matches!(ping, Ok(Ok(())));
    gauge!("ordo_database_up").set(if up { 1.0 } else { 0.0 });
    if !up {
        return;
    }
    let timeout_minutes = (ordo.policy.unpaid_timeout_ms / 60_000) as u32;
    let timeout_s = i64::from(timeout_minutes) * 60;
    let seconds = |ms: i64| ms.max(0) as f64 / 1000.0;
    let read = async {
        let age = ordo.oldest_due_order_age_ms(timeout_minutes).await?;
        gauge!("ordo_oldest_overdue_order_age_seconds").set(seconds(age.unwrap_or(0)));
        gauge!("ordo_orders_past_deadline_max_seconds")
            .set(age.map_or(0.0, |age| seconds(age - timeout_s * 1000)));
        let due = if age.is_some() {
            ordo.count_due_orders(timeout_minutes).await?
        } else {
            0
        };
        gauge!("ordo_orders_past_deadline").set(due as f64);
        gauge!("ordo_late_payments_awaiting_refund")
            .set(ordo.count_payments_to_refund().await? as f64);
        let lag = ordo.oldest_undelivered_age_ms().await?;
        gauge!("ordo_events_oldest_undelivered_age_seconds").set(seconds(lag.unwrap_or(0)));
        let mut conn = ordo.db.pool().acquire().await?;
        gauge!("ordo_webhook_deliveries_dead")
            .set(crate::db::webhooks::count_dead(&mut conn).await? as f64);
        let last = crate::db::sweep_runs::last_real_runs(&mut conn).await?;
        gauge!("ordo_sweep_last_finished_timestamp_seconds")
            .set(last.finished_at.map_or(0.0, seconds));
        gauge!("ordo_sweep_last_run_errors").set(last.errors as f64);
        Ok::<_, crate::Error>(())
    };
    match tokio::time::timeout(SCRAPE_BUDGET, read).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "metrics: could not read the gauges"),
        Err(_) => tracing::warn!(
            budget_s = SCRAPE_BUDGET.as_secs(),
            "metrics: the database took too long; the gauges keep their last values"
        ),
    }
}

/// What this process was configured with, for rules that compare ages with intervals.
pub fn set_intervals(sweep_interval_seconds: u64, backup_interval_minutes: u32) {
    metrics_handle();
    metrics::gauge!("ordo_sweep_interval_seconds").set(sweep_interval_seconds as f64);
    metrics::gauge!("ordo_backup_interval_seconds").set(f64::from(backup_interval_minutes) * 60.0);
}
