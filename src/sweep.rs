//! The unpaid-order sweep: cancels orders left pending past the unpaid timeout and
//! releases their stock. One batch at a time: claim (PostgreSQL `FOR UPDATE SKIP LOCKED`,
//! SQLite `BEGIN IMMEDIATE`), cancel the whole batch with a few set-based statements in one
//! transaction, move on; memory stays flat whatever the backlog. If a batch fails, its
//! orders are redone one at a time so only the bad order fails. The CLI, the HTTP endpoint
//! and the scheduler all call [`Ordo::cancel_unpaid_orders`].

use crate::Ordo;
use crate::db::sweep::{self as queries, Cursor, DueOrder};
use crate::domain::{Actor, Millis, OrderStatus, format_rfc3339};
use crate::error::{Error, Result};
use crate::orders::{TransitionInput, apply_transition};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub use crate::db::sweep::DueOrder as SweptOrder;

/// What one run should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepRequest {
    pub timeout_minutes: u32,
    pub dry_run: bool,
    pub batch_size: u32,
    /// At most this many due orders in this run.
    pub limit: Option<u64>,
}

/// What happened to one due order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    Cancelled,
    WouldCancel,
    /// No longer due when its turn came (paid, cancelled or claimed elsewhere meanwhile).
    Skipped,
    Failed(String),
}

/// One batch: its orders with their outcomes, and where the next batch starts.
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    pub orders: Vec<(DueOrder, OrderOutcome)>,
    pub units_released: i64,
    pub next: Cursor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SweepFailure {
    pub order_id: i64,
    pub number: String,
    pub error: String,
}

/// The run's summary (`--json`, `POST /sweeps`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SweepSummary {
    pub dry_run: bool,
    pub timeout_minutes: u32,
    pub cutoff: String,
    pub found: u64,
    pub cancelled: u64,
    pub would_cancel: u64,
    pub skipped: u64,
    pub errors: u64,
    pub units_released: i64,
    pub duration_ms: u64,
    pub orders_per_second: f64,
    /// The first failures (at most 100), to act on.
    pub failures: Vec<SweepFailure>,
    /// Set when the run stopped early: a database error, or shutdown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

const MAX_FAILURES_LISTED: usize = 100;

impl SweepRequest {
    fn timeout_ms(&self) -> Millis {
        i64::from(self.timeout_minutes) * 60_000
    }
}

impl Ordo {
    /// The age in milliseconds of the oldest order a sweep with this timeout would cancel
    /// now, if any.
    pub async fn oldest_due_order_age_ms(&self, timeout_minutes: u32) -> Result<Option<Millis>> {
        let now = self.clock.now();
        let cutoff = now - i64::from(timeout_minutes) * 60_000;
        let mut conn = self.db.pool().acquire().await?;
        Ok(queries::oldest_due(&mut conn, cutoff, now)
            .await?
            .map(|created| now - created))
    }

    /// How many orders a sweep with this timeout would find now.
    pub async fn count_due_orders(&self, timeout_minutes: u32) -> Result<i64> {
        let now = self.clock.now();
        let cutoff = now - i64::from(timeout_minutes) * 60_000;
        let mut conn = self.db.pool().acquire().await?;
        queries::count_due(&mut conn, cutoff, now).await
    }

    /// One batch of the sweep: up to `size` due orders after `cursor`, cancelled together
    /// (or, in a dry run, only listed). An empty report means nothing is left.
    pub async fn sweep_batch(
        &self,
        cutoff: Millis,
        now: Millis,
        cursor: Cursor,
        size: u32,
        dry_run: bool,
    ) -> Result<BatchReport> {
        let dialect = self.db.dialect();
        let size = i64::from(size.max(1));
        if dry_run {
            let mut conn = self.db.pool().acquire().await?;
            let due =
                queries::next_due(&mut conn, dialect, cutoff, now, cursor, size, false).await?;
            return Ok(report(due, |_| OrderOutcome::WouldCancel, 0, cursor));
        }
        let mut tx = self.db.write_tx().await?;
        let due = queries::next_due(&mut tx, dialect, cutoff, now, cursor, size, true).await?;
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(BatchReport {
                next: cursor,
                ..BatchReport::default()
            });
        }
        let batch = match queries::cancel_batch(&mut tx, dialect, &due, now).await {
            Ok(units) => tx.commit().await.map(|()| units).map_err(Error::from),
            Err(err) => {
                drop(tx);
                Err(err)
            }
        };
        match batch {
            Ok(units) => {
                metrics::counter!("ordo_order_transitions_total", "from" => "pending", "to" => "cancelled")
                    .increment(due.len() as u64);
                Ok(report(due, |_| OrderOutcome::Cancelled, units, cursor))
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    orders = due.len(),
                    "sweep batch failed; redoing its orders one at a time"
                );
                let mut units = 0;
                let mut outcomes = Vec::with_capacity(due.len());
                for order in &due {
                    let outcome = self.cancel_one_unpaid(order.id, cutoff, now).await;
                    if outcome == OrderOutcome::Cancelled {
                        units += order.units;
                    }
                    outcomes.push(outcome);
                }
                let mut outcomes = outcomes.into_iter();
                Ok(report(
                    due,
                    |_| outcomes.next().unwrap_or(OrderOutcome::Skipped),
                    units,
                    cursor,
                ))
            }
        }
    }

    /// Cancels one due order through the ordinary transition, in its own transaction.
    async fn cancel_one_unpaid(&self, order_id: i64, cutoff: Millis, now: Millis) -> OrderOutcome {
        let attempt = async {
            let dialect = self.db.dialect();
            let mut tx = self.db.write_tx().await?;
            if !queries::lock_if_due(&mut tx, dialect, order_id, cutoff, now).await? {
                return Ok(OrderOutcome::Skipped);
            }
            let order = crate::db::orders::lock_existing(&mut tx, dialect, order_id).await?;
            let input = TransitionInput {
                note: Some(queries::REASON.to_owned()),
                ..TransitionInput::default()
            };
            apply_transition(
                &mut tx,
                dialect,
                &order,
                OrderStatus::Cancelled,
                Actor::Expiry,
                &input,
                now,
            )
            .await?;
            tx.commit().await?;
            Ok::<_, Error>(OrderOutcome::Cancelled)
        };
        match attempt.await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!(order_id, error = %err, "sweep could not cancel order");
                OrderOutcome::Failed(err.to_string())
            }
        }
    }

    /// A whole run: batches until nothing is due, the limit is reached, or `stop` is set
    /// (the batch in hand is finished first). `on_order` sees every due order's outcome.
    pub async fn cancel_unpaid_orders(
        &self,
        request: &SweepRequest,
        stop: &AtomicBool,
        mut on_order: impl FnMut(&DueOrder, &OrderOutcome),
    ) -> SweepSummary {
        let started = Instant::now();
        let now = self.clock.now();
        let cutoff = now - request.timeout_ms();
        let mut summary = SweepSummary {
            dry_run: request.dry_run,
            timeout_minutes: request.timeout_minutes,
            cutoff: format_rfc3339(cutoff),
            found: 0,
            cancelled: 0,
            would_cancel: 0,
            skipped: 0,
            errors: 0,
            units_released: 0,
            duration_ms: 0,
            orders_per_second: 0.0,
            failures: Vec::new(),
            stopped: None,
        };
        let mut cursor = Cursor::start();
        loop {
            if stop.load(Ordering::SeqCst) {
                summary.stopped = Some("shutdown requested".to_owned());
                break;
            }
            let remaining = request
                .limit
                .map_or(u64::MAX, |l| l.saturating_sub(summary.found));
            if remaining == 0 {
                break;
            }
            let size = u64::from(request.batch_size).min(remaining) as u32;
            let batch = match self
                .sweep_batch(cutoff, now, cursor, size, request.dry_run)
                .await
            {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::error!(error = %err, "sweep stopped");
                    summary.errors += 1;
                    summary.stopped = Some(err.to_string());
                    break;
                }
            };
            if batch.orders.is_empty() {
                break;
            }
            cursor = batch.next;
            summary.units_released += batch.units_released;
            for (order, outcome) in &batch.orders {
                summary.found += 1;
                match outcome {
                    OrderOutcome::Cancelled => summary.cancelled += 1,
                    OrderOutcome::WouldCancel => summary.would_cancel += 1,
                    OrderOutcome::Skipped => summary.skipped += 1,
                    OrderOutcome::Failed(error) => {
                        summary.errors += 1;
                        if summary.failures.len() < MAX_FAILURES_LISTED {
                            summary.failures.push(SweepFailure {
                                order_id: order.id,
                                number: order.number.clone(),
                                error: error.clone(),
                            });
                        }
                    }
                }
                on_order(order, outcome);
            }
        }
        let elapsed = started.elapsed();
        summary.duration_ms = elapsed.as_millis() as u64;
        summary.orders_per_second = if elapsed.as_secs_f64() > 0.0 {
            (summary.found as f64 / elapsed.as_secs_f64()).round()
        } else {
            0.0
        };
        let dry_run = if summary.dry_run { "true" } else { "false" };
        metrics::counter!("ordo_sweep_runs_total", "dry_run" => dry_run).increment(1);
        metrics::counter!("ordo_sweep_orders_cancelled_total").increment(summary.cancelled);
        metrics::counter!("ordo_sweep_units_released_total")
            .increment(summary.units_released.max(0) as u64);
        metrics::counter!("ordo_sweep_errors_total").increment(summary.errors);
        metrics::histogram!("ordo_sweep_duration_seconds", "dry_run" => dry_run)
            .record(elapsed.as_secs_f64());
        tracing::info!(
            dry_run = summary.dry_run,
            timeout_minutes = summary.timeout_minutes,
            cutoff = %summary.cutoff,
            found = summary.found,
            cancelled = summary.cancelled,
            would_cancel = summary.would_cancel,
            skipped = summary.skipped,
            errors = summary.errors,
            units_released = summary.units_released,
            duration_ms = summary.duration_ms,
            "sweep finished"
        );
        summary
    }
}

fn report(
    due: Vec<DueOrder>,
    mut outcome: impl FnMut(&DueOrder) -> OrderOutcome,
    units_released: i64,
    cursor: Cursor,
) -> BatchReport {
    let next = due.last().map_or(cursor, Cursor::after);
    BatchReport {
        orders: due
            .into_iter()
            .map(|order| {
                let o = outcome(&order);
                (order, o)
            })
            .collect(),
        units_released,
        next,
    }
}
