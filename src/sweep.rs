//! The unpaid-order sweep: cancels orders left pending past the unpaid timeout and
//! releases their stock. One batch at a time: claim (PostgreSQL `FOR UPDATE SKIP LOCKED`,
//! SQLite `BEGIN IMMEDIATE`), cancel the whole batch with a few set-based statements in one
//! transaction, move on; memory stays flat whatever the backlog. If a batch fails, its
//! orders are redone one at a time so only the bad order fails. The CLI, the HTTP endpoint,
//! the console and the scheduler all call [`Ordo::run_sweep`] (or [`Ordo::start_sweep_run`]
//! and [`Ordo::finish_sweep_run`] for a run in the background), which records every run in
//! `sweep_runs` and the staff who started it in the audit log.

use crate::Ordo;
use crate::audit::{self, Object};
use crate::db::sweep::{self as queries, Cursor, DueOrder};
use crate::db::sweep_runs;
use crate::domain::{Actor, Millis, OrderStatus, format_rfc3339, time::serde_rfc3339};
use crate::error::{Error, Result};
use crate::events;
use crate::orders::TransitionInput;
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
    /// Evaluate deadlines as of this instant instead of the clock's now.
    pub now: Option<Millis>,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SweepTrigger {
    Scheduler,
    Cli,
    Api,
    Console,
}

impl SweepTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepTrigger::Scheduler => "scheduler",
            SweepTrigger::Cli => "cli",
            SweepTrigger::Api => "api",
            SweepTrigger::Console => "console",
        }
    }
}

/// A run as recorded: who started it, how, and what it did (so far, while running).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SweepRun {
    pub id: i64,
    /// scheduler, cli, api or console.
    pub trigger: String,
    /// Who started it: `user:ID`, `cli:LOGIN` or `system:scheduler`.
    pub actor: String,
    pub dry_run: bool,
    pub timeout_minutes: i64,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub cutoff: Millis,
    /// running, finished, stopped (early: shutdown or a database error) or interrupted
    /// (its process went away mid-run).
    pub state: String,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Millis,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Millis>,
    pub found: i64,
    pub cancelled: i64,
    pub would_cancel: i64,
    pub skipped: i64,
    pub errors: i64,
    pub units_released: i64,
    pub duration_ms: i64,
    pub stopped_reason: Option<String>,
    pub failures: Vec<SweepFailure>,
    /// Questions asked of payment providers.
    pub queried: i64,
    /// Orders a provider said were paid: paid now, not cancelled.
    pub found_paid: i64,
    /// Provider transactions closed before their orders were cancelled.
    pub closed: i64,
    /// Orders left pending because their provider could not answer (tried next run).
    pub deferred: i64,
}

/// A running run that has not reported for this long is taken to be interrupted.
const STALE_RUN_MS: Millis = 10 * 60_000;

impl SweepRun {
    fn from_row(row: sweep_runs::RunRow, now: Millis) -> SweepRun {
        let state = if row.state == "running" && row.heartbeat_at < now - STALE_RUN_MS {
            "interrupted".to_owned()
        } else {
            row.state
        };
        SweepRun {
            id: row.id,
            trigger: row.trigger,
            actor: row.actor,
            dry_run: row.dry_run != 0,
            timeout_minutes: row.timeout_minutes,
            cutoff: row.cutoff,
            state,
            started_at: row.started_at,
            finished_at: row.finished_at,
            found: row.found,
            cancelled: row.cancelled,
            would_cancel: row.would_cancel,
            skipped: row.skipped,
            errors: row.errors,
            units_released: row.units_released,
            duration_ms: row.duration_ms,
            stopped_reason: row.stopped_reason,
            failures: serde_json::from_str(&row.failures).unwrap_or_default(),
            queried: row.queried,
            found_paid: row.found_paid,
            closed: row.closed,
            deferred: row.deferred,
        }
    }
}

/// What happened to one due order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    Cancelled,
    WouldCancel,
    /// No longer due when its turn came (paid, cancelled or claimed elsewhere meanwhile).
    Skipped,
    Failed(String),
    /// Its payment provider said it was paid: paid now, not cancelled.
    FoundPaid,
    /// Its payment provider could not answer (or said something ordo cannot act on): left
    /// pending, asked again next run.
    Deferred(String),
}

/// One batch: its orders with their outcomes, and where the next batch starts.
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    pub orders: Vec<(DueOrder, OrderOutcome)>,
    pub units_released: i64,
    pub next: Cursor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
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
    /// Questions asked of payment providers (a real run asks before it cancels an order
    /// whose payment is open at a provider; a dry run asks nothing).
    pub queried: u64,
    /// Orders a provider said were paid: paid now, not cancelled.
    pub found_paid: u64,
    /// Provider transactions closed before their orders were cancelled.
    pub closed: u64,
    /// Orders left pending because their provider could not answer; asked again next run.
    pub deferred: u64,
    /// Why the first deferred orders (at most 100) were deferred.
    pub deferrals: Vec<SweepFailure>,
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

/// How often a running run writes its progress to its record.
const HEARTBEAT_MS: u128 = 1_000;

/// A table this large without planner statistics is analyzed before a real sweep; below it
/// any plan is fast.
const ANALYZE_FROM_ROWS: i64 = 10_000;

impl SweepSummary {
    fn progress<'a>(
        &'a self,
        failures: &'a str,
        finished_at: Option<Millis>,
    ) -> sweep_runs::Progress<'a> {
        sweep_runs::Progress {
            state: match (finished_at, &self.stopped) {
                (None, _) => "running",
                (Some(_), None) => "finished",
                (Some(_), Some(_)) => "stopped",
            },
            found: self.found as i64,
            cancelled: self.cancelled as i64,
            would_cancel: self.would_cancel as i64,
            skipped: self.skipped as i64,
            errors: self.errors as i64,
            units_released: self.units_released,
            duration_ms: self.duration_ms as i64,
            stopped_reason: self.stopped.as_deref(),
            failures,
            finished_at,
            queried: self.queried as i64,
            found_paid: self.found_paid as i64,
            closed: self.closed as i64,
            deferred: self.deferred as i64,
        }
    }
}

impl Ordo {
    /// Records the start of a run (and, for staff and operators, an audit row) and returns
    /// its record; [`Ordo::finish_sweep_run`] does the work. Only staff, operators and the
    /// scheduler start runs.
    pub async fn start_sweep_run(
        &self,
        actor: Actor,
        trigger: SweepTrigger,
        request: &SweepRequest,
    ) -> Result<SweepRun> {
        if !(actor.is_staff() || actor == Actor::Scheduler) {
            return Err(Error::Forbidden {
                reason: "only staff run sweeps".to_owned(),
            });
        }
        let now = self.clock.now();
        let cutoff = request.now.unwrap_or(now) - request.timeout_ms();
        let mut tx = self.db.write_tx().await?;
        let id = sweep_runs::insert(
            &mut tx,
            trigger.as_str(),
            &actor.label(),
            request.dry_run,
            i64::from(request.timeout_minutes),
            cutoff,
            now,
        )
        .await?;
        audit::record(
            &mut tx,
            actor,
            "sweep.run",
            Object::SweepRun(id),
            serde_json::json!({"trigger": trigger.as_str(), "dry_run": request.dry_run,
                "timeout_minutes": request.timeout_minutes, "limit": request.limit}),
            now,
        )
        .await?;
        let row = sweep_runs::get(&mut tx, id)
            .await?
            .ok_or(Error::NotFound { what: "sweep run" })?;
        tx.commit().await?;
        Ok(SweepRun::from_row(row, now))
    }

    /// Does the work of a started run, writing its progress to the record as it goes and
    /// its summary at the end (`stopped` with the reason when it stopped early).
    pub async fn finish_sweep_run(
        &self,
        run_id: i64,
        request: &SweepRequest,
        stop: &AtomicBool,
        on_order: impl FnMut(&DueOrder, &OrderOutcome),
    ) -> SweepSummary {
        let summary = self
            .cancel_unpaid_orders_recorded(request, stop, on_order, Some(run_id))
            .await;
        let failures = serde_json::to_string(&summary.failures).unwrap_or_else(|_| "[]".into());
        let now = self.clock.now();
        let written = async {
            let mut conn = self.db.pool().acquire().await?;
            sweep_runs::update(
                &mut conn,
                run_id,
                &summary.progress(&failures, Some(now)),
                now,
            )
            .await
        };
        if let Err(err) = written.await {
            tracing::error!(run_id, error = %err, "could not record the end of a sweep run");
        }
        summary
    }

    /// A whole recorded run: [`Ordo::start_sweep_run`], then [`Ordo::finish_sweep_run`].
    pub async fn run_sweep(
        &self,
        actor: Actor,
        trigger: SweepTrigger,
        request: &SweepRequest,
        stop: &AtomicBool,
        on_order: impl FnMut(&DueOrder, &OrderOutcome),
    ) -> Result<(SweepRun, SweepSummary)> {
        let run = self.start_sweep_run(actor, trigger, request).await?;
        let summary = self.finish_sweep_run(run.id, request, stop, on_order).await;
        let run = self.sweep_run(actor, run.id).await.unwrap_or(run);
        Ok((run, summary))
    }

    /// One run's record (staff, operators).
    pub async fn sweep_run(&self, actor: Actor, id: i64) -> Result<SweepRun> {
        crate::auth::require_staff_or(actor, Actor::Scheduler)?;
        let mut conn = self.db.pool().acquire().await?;
        let row = sweep_runs::get(&mut conn, id)
            .await?
            .ok_or(Error::NotFound { what: "sweep run" })?;
        Ok(SweepRun::from_row(row, self.clock.now()))
    }

    /// Runs, newest first (staff, operators).
    pub async fn sweep_runs(
        &self,
        actor: Actor,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SweepRun>> {
        crate::auth::require_staff(actor)?;
        let now = self.clock.now();
        let mut conn = self.db.pool().acquire().await?;
        Ok(sweep_runs::list(&mut conn, before_id, limit)
            .await?
            .into_iter()
            .map(|row| SweepRun::from_row(row, now))
            .collect())
    }

    /// The age in milliseconds of the oldest order a sweep with this timeout would cancel
    /// now, if any.
    pub async fn oldest_due_order_age_ms(&self, timeout_minutes: u32) -> Result<Option<Millis>> {
        let (now, cutoff) = self.due_as_of_now(timeout_minutes);
        let mut conn = self.db.pool().acquire().await?;
        Ok(queries::oldest_due(&mut conn, cutoff, now)
            .await?
            .map(|created| now - created))
    }

    /// How many orders a sweep with this timeout would find now.
    pub async fn count_due_orders(&self, timeout_minutes: u32) -> Result<i64> {
        self.count_due_orders_as_of(timeout_minutes, self.clock.now())
            .await
    }

    /// How many orders a sweep with this timeout would find as of `as_of`.
    pub async fn count_due_orders_as_of(&self, timeout_minutes: u32, as_of: Millis) -> Result<i64> {
        let cutoff = as_of - i64::from(timeout_minutes) * 60_000;
        let mut conn = self.db.pool().acquire().await?;
        queries::count_due(&mut conn, cutoff, as_of).await
    }

    /// One batch of the sweep: up to `size` orders due as of `as_of` after `cursor`,
    /// cancelled together (or, in a dry run, only listed); what it writes carries the
    /// clock's time. An empty report means nothing is left.
    pub async fn sweep_batch(
        &self,
        cutoff: Millis,
        as_of: Millis,
        cursor: Cursor,
        size: u32,
        dry_run: bool,
    ) -> Result<BatchReport> {
        let dialect = self.db.dialect();
        let size = i64::from(size.max(1));
        if dry_run {
            let mut conn = self.db.pool().acquire().await?;
            let due =
                queries::next_due(&mut conn, dialect, cutoff, as_of, cursor, size, false).await?;
            return Ok(report(due, |_| OrderOutcome::WouldCancel, 0, cursor));
        }
        let mut tx = self.db.write_tx().await?;
        let due = queries::next_due(&mut tx, dialect, cutoff, as_of, cursor, size, true).await?;
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(BatchReport {
                next: cursor,
                ..BatchReport::default()
            });
        }
        let now = self.clock.now();
        let batch = match self.cancel_claimed(&mut tx, &due, now).await {
            Ok(units) => self.commit(tx).await.map(|()| units),
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
                    let outcome = self.cancel_one_unpaid(order.id, cutoff, as_of).await;
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

    /// Cancels a claimed batch set-based, with one `order.expired` event per order (and the
    /// products' back-in-stock events) written by one statement; returns the units released.
    async fn cancel_claimed(
        &self,
        tx: &mut crate::db::Tx,
        due: &[DueOrder],
        now: Millis,
    ) -> Result<i64> {
        let dialect = self.db.dialect();
        let cancelled = queries::cancel_batch(tx, dialect, due, now, self.policy.events).await?;
        let units = cancelled.returned.iter().map(|(_, units)| units).sum();
        if !self.policy.events {
            return Ok(units);
        }
        let details = self.details_of(tx, cancelled.orders).await?;
        let mut new_events = Vec::with_capacity(details.len() + cancelled.returned.len());
        for (details, seq) in &details {
            new_events.push(crate::orders::expired_event(details, *seq));
        }
        new_events.extend(
            cancelled
                .returned
                .iter()
                .filter_map(|(product, units)| events::stock_events(product, *units)),
        );
        events::record(tx, dialect, true, &new_events, now).await?;
        Ok(units)
    }

    /// Cancels one order due as of `as_of` through the ordinary transition, in its own
    /// transaction.
    async fn cancel_one_unpaid(
        &self,
        order_id: i64,
        cutoff: Millis,
        as_of: Millis,
    ) -> OrderOutcome {
        let attempt = async {
            let dialect = self.db.dialect();
            let mut tx = self.db.write_tx().await?;
            if !queries::lock_if_due(&mut tx, dialect, order_id, cutoff, as_of).await? {
                return Ok(OrderOutcome::Skipped);
            }
            let now = self.clock.now();
            let order = crate::db::orders::lock_existing(&mut tx, dialect, order_id).await?;
            let input = TransitionInput {
                note: Some(queries::REASON.to_owned()),
                ..TransitionInput::default()
            };
            self.apply_transition(
                &mut tx,
                &order,
                OrderStatus::Cancelled,
                Actor::Expiry,
                &input,
                now,
            )
            .await?;
            self.commit(tx).await?;
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

    /// A whole run, unrecorded: batches until nothing is due, the limit is reached, or
    /// `stop` is set (the batch in hand is finished first). `on_order` sees every due
    /// order's outcome. Front ends call [`Ordo::run_sweep`], which records the run.
    pub async fn cancel_unpaid_orders(
        &self,
        request: &SweepRequest,
        stop: &AtomicBool,
        on_order: impl FnMut(&DueOrder, &OrderOutcome),
    ) -> SweepSummary {
        self.cancel_unpaid_orders_recorded(request, stop, on_order, None)
            .await
    }

    /// Before a real run: tables the batches read that have never had planner statistics
    /// get them, once (see [`queries::analyze_if_never_analyzed`]). A failure only costs speed.
    async fn gather_missing_statistics(&self) {
        let analyzed = async {
            let mut conn = self.db.pool().acquire().await?;
            queries::analyze_if_never_analyzed(&mut conn, self.db.dialect(), ANALYZE_FROM_ROWS)
                .await
        }
        .await;
        match analyzed {
            Ok(tables) if !tables.is_empty() => {
                tracing::info!(?tables, "tables had no planner statistics: analyzed them");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "could not gather planner statistics"),
        }
    }

    async fn cancel_unpaid_orders_recorded(
        &self,
        request: &SweepRequest,
        stop: &AtomicBool,
        mut on_order: impl FnMut(&DueOrder, &OrderOutcome),
        run_id: Option<i64>,
    ) -> SweepSummary {
        let started = Instant::now();
        let mut reported = Instant::now();
        // `--now` decides which orders are due; what the run writes carries the clock's time.
        let as_of = request.now.unwrap_or_else(|| self.clock.now());
        let cutoff = as_of - request.timeout_ms();
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
            queried: 0,
            found_paid: 0,
            closed: 0,
            deferred: 0,
            deferrals: Vec::new(),
            stopped: None,
        };
        if !request.dry_run {
            self.gather_missing_statistics().await;
            if let Err(err) = self
                .ask_providers_first(request, cutoff, as_of, stop, &mut summary, &mut on_order)
                .await
            {
                tracing::error!(error = %err, "sweep stopped while asking payment providers");
                summary.errors += 1;
                summary.stopped = Some(err.to_string());
            }
        }
        let mut cursor = Cursor::start();
        while summary.stopped.is_none() {
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
                .sweep_batch(cutoff, as_of, cursor, size, request.dry_run)
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
                    // Only the providers' questions come to these; a batch never does.
                    OrderOutcome::FoundPaid | OrderOutcome::Deferred(_) => {}
                }
                on_order(order, outcome);
            }
            if let Some(run_id) = run_id.filter(|_| reported.elapsed().as_millis() >= HEARTBEAT_MS)
            {
                reported = Instant::now();
                summary.duration_ms = started.elapsed().as_millis() as u64;
                let failures = serde_json::to_string(&summary.failures).unwrap_or_default();
                let at = self.clock.now();
                let written = async {
                    let mut conn = self.db.pool().acquire().await?;
                    sweep_runs::update(&mut conn, run_id, &summary.progress(&failures, None), at)
                        .await
                };
                if let Err(err) = written.await {
                    tracing::warn!(run_id, error = %err, "could not record sweep progress");
                }
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
        metrics::counter!("ordo_sweep_provider_queries_total").increment(summary.queried);
        metrics::counter!("ordo_sweep_orders_found_paid_total").increment(summary.found_paid);
        metrics::counter!("ordo_sweep_provider_closes_total").increment(summary.closed);
        metrics::counter!("ordo_sweep_orders_deferred_total").increment(summary.deferred);
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
            queried = summary.queried,
            found_paid = summary.found_paid,
            closed = summary.closed,
            deferred = summary.deferred,
            duration_ms = summary.duration_ms,
            "sweep finished"
        );
        summary
    }
}

/// Due orders asked about per page: their questions run `provider_concurrency` at a time.
const ASK_PAGE: i64 = 1_000;

impl Ordo {
    /// Before the batches: every due order whose payment is open at a provider is asked
    /// about (and its transaction closed there when unpaid), page by page, as many at once
    /// as `provider_concurrency` allows, no transaction held. Orders found paid become paid;
    /// orders whose provider could not answer stay pending (deferred, with the reason);
    /// the others are now plain due orders, which the batches cancel.
    async fn ask_providers_first(
        &self,
        request: &SweepRequest,
        cutoff: Millis,
        as_of: Millis,
        stop: &AtomicBool,
        summary: &mut SweepSummary,
        on_order: &mut impl FnMut(&DueOrder, &OrderOutcome),
    ) -> Result<()> {
        use crate::payments::AskOutcome;
        use futures_util::StreamExt;
        let mut cursor = Cursor::start();
        loop {
            if stop.load(Ordering::SeqCst) {
                summary.stopped = Some("shutdown requested".to_owned());
                return Ok(());
            }
            let remaining = request
                .limit
                .map_or(u64::MAX, |l| l.saturating_sub(summary.found));
            if remaining == 0 {
                return Ok(());
            }
            let page = {
                let mut conn = self.db.pool().acquire().await?;
                queries::next_to_ask(
                    &mut conn,
                    self.db.dialect(),
                    cutoff,
                    as_of,
                    cursor,
                    ASK_PAGE.min(remaining.min(i64::MAX as u64) as i64),
                )
                .await?
            };
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            cursor = Cursor::after(last);
            let asks: Vec<_> = page
                .into_iter()
                .map(|(order, payments)| {
                    let ordo = self.clone();
                    async move {
                        let (mut queries, mut closes) = (0, 0);
                        let mut outcome = None;
                        let mut closed = Vec::new();
                        for payment in &payments {
                            let (asked, calls, unrecorded) =
                                ordo.ask_payment_with(payment, true, false).await;
                            queries += calls.queries;
                            if asked == AskOutcome::Closed {
                                closes += calls.closes;
                            }
                            if let Some(state) = unrecorded {
                                closed.push((payment.id, state));
                            }
                            match asked {
                                AskOutcome::Paid => outcome = Some(OrderOutcome::FoundPaid),
                                AskOutcome::Deferred(reason) if outcome.is_none() => {
                                    outcome = Some(OrderOutcome::Deferred(reason))
                                }
                                _ => {}
                            }
                        }
                        let outcome = outcome.unwrap_or(OrderOutcome::Skipped);
                        (order, outcome, queries, closes, closed)
                    }
                })
                .collect();
            let answered: Vec<_> = futures_util::stream::iter(asks)
                .buffer_unordered(self.providers().concurrency())
                .collect()
                .await;
            // What was closed at the providers, written at once; if that fails, those orders
            // wait for the next run (asked again, found closed).
            let closed: Vec<(i64, String)> = answered
                .iter()
                .flat_map(|(_, _, _, _, closed)| closed.iter().cloned())
                .collect();
            let written = self.record_closed_payments(&closed).await;
            if let Err(err) = &written {
                tracing::warn!(error = %err, "could not record payments closed at their providers");
            }
            let asked: Vec<(DueOrder, OrderOutcome, u64, u64)> = answered
                .into_iter()
                .map(
                    |(order, outcome, queries, closes, closed)| match (&written, outcome) {
                        (Err(err), OrderOutcome::Skipped) if !closed.is_empty() => (
                            order,
                            OrderOutcome::Deferred(format!(
                                "closed at the provider, not recorded: {err}"
                            )),
                            queries,
                            closes,
                        ),
                        (_, outcome) => (order, outcome, queries, closes),
                    },
                )
                .collect();
            for (order, outcome, queries, closes) in asked {
                summary.queried += queries;
                summary.closed += closes;
                match &outcome {
                    OrderOutcome::FoundPaid => {
                        summary.found += 1;
                        summary.found_paid += 1;
                    }
                    OrderOutcome::Deferred(reason) => {
                        summary.found += 1;
                        summary.deferred += 1;
                        if summary.deferrals.len() < MAX_FAILURES_LISTED {
                            summary.deferrals.push(SweepFailure {
                                order_id: order.id,
                                number: order.number.clone(),
                                error: reason.clone(),
                            });
                        }
                    }
                    // Closed at the provider: the batches cancel it (and count it there).
                    _ => continue,
                }
                on_order(&order, &outcome);
            }
        }
    }
}

/// Orders a preview lists; its counts and units cover the whole due set.
pub const PREVIEW_ORDERS: i64 = 200;

pub use crate::db::sweep::DueFingerprint;

/// A dry run as the console shows it: the due set as of `now`, identified by its
/// fingerprint, the first [`PREVIEW_ORDERS`] orders and the units per product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepPreview {
    pub now: Millis,
    pub timeout_minutes: u32,
    pub cutoff: Millis,
    pub fingerprint: DueFingerprint,
    pub orders: Vec<DueOrder>,
    /// (product id, sku, name, units) over the whole due set.
    pub units: Vec<(i64, String, String, i64)>,
}

impl SweepPreview {
    pub fn total_units(&self) -> i64 {
        self.units.iter().map(|(_, _, _, u)| u).sum()
    }
}

/// What asking to run a previewed sweep did.
#[derive(Debug, Clone)]
pub enum PreviewedRun {
    /// The due set was still the previewed one: it was swept.
    Ran(Box<(SweepRun, SweepSummary)>),
    /// The due set changed: nothing was done; here is the fresh preview.
    Changed(SweepPreview),
}

impl Ordo {
    /// What a sweep with this timeout would cancel now (staff). Changes nothing and records
    /// no run.
    pub async fn preview_sweep(&self, actor: Actor, timeout_minutes: u32) -> Result<SweepPreview> {
        crate::auth::require_staff(actor)?;
        let (now, cutoff) = self.due_as_of_now(timeout_minutes);
        let mut conn = self.db.pool().acquire().await?;
        let fingerprint = queries::due_fingerprint(&mut conn, cutoff, now).await?;
        let orders = queries::next_due(
            &mut conn,
            self.db.dialect(),
            cutoff,
            now,
            Cursor::start(),
            PREVIEW_ORDERS,
            false,
        )
        .await?;
        let units = queries::due_units_per_product(&mut conn, cutoff, now).await?;
        Ok(SweepPreview {
            now,
            timeout_minutes,
            cutoff,
            fingerprint,
            orders,
            units,
        })
    }

    /// Now, and the cutoff of `timeout_minutes` before it: what the due counts, the preview
    /// and a previewed run look at.
    fn due_as_of_now(&self, timeout_minutes: u32) -> (Millis, Millis) {
        let now = self.clock.now();
        (now, now - i64::from(timeout_minutes) * 60_000)
    }

    /// Runs the sweep a preview showed, only if the orders due now are still exactly the
    /// previewed ones (same fingerprint); otherwise changes nothing and returns the fresh
    /// preview. The run is recorded like any other, capped at the previewed count.
    pub async fn run_previewed_sweep(
        &self,
        actor: Actor,
        trigger: SweepTrigger,
        timeout_minutes: u32,
        batch_size: u32,
        previewed: DueFingerprint,
    ) -> Result<PreviewedRun> {
        crate::auth::require_staff(actor)?;
        let (now, cutoff) = self.due_as_of_now(timeout_minutes);
        let fingerprint = {
            let mut conn = self.db.pool().acquire().await?;
            queries::due_fingerprint(&mut conn, cutoff, now).await?
        };
        if fingerprint != previewed {
            let fresh = self.preview_sweep(actor, timeout_minutes).await?;
            return Ok(PreviewedRun::Changed(fresh));
        }
        let request = SweepRequest {
            timeout_minutes,
            dry_run: false,
            batch_size,
            limit: Some(previewed.count.max(0) as u64),
            now: Some(now),
        };
        let ran = self
            .run_sweep(actor, trigger, &request, &AtomicBool::new(false), |_, _| {})
            .await?;
        Ok(PreviewedRun::Ran(Box::new(ran)))
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
