//! Logging through `tracing`, to stderr: text on a terminal, JSON with `log_format = json`.

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
        "ordo_events_oldest_undelivered_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest event an enabled endpoint has not received yet (0 when none)"
    );
}
