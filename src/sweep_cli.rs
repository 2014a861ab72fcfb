//! `ordo cancel-unpaid-orders`: the sweep from a terminal or cron. A start line, a progress
//! bar on a terminal, one line per order with `-v`, and a true summary. Exit 0 when no order
//! failed, 1 when any did.

use crate::Ordo;
use crate::cli::{Failure, SweepArgs};
use crate::config::Settings;
use crate::domain::Actor;
use crate::domain::format_rfc3339;
use crate::sweep::{OrderOutcome, SweepRequest, SweepSummary, SweepTrigger};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

pub async fn run(settings: &Settings, args: SweepArgs) -> Result<ExitCode, Failure> {
    // The backup is complete (renamed into place) before the sweep opens the database.
    if args.backup_first {
        if args.dry_run {
            eprintln!("--backup-first: a dry run changes nothing; no backup taken");
        } else {
            let taken = crate::backup::backup_configured(settings, None, "before-sweep").await?;
            eprintln!("{}", taken.describe());
        }
    }
    // The sweep works one batch at a time: two connections are plenty, and a small pool
    // keeps memory flat however long the run.
    let ordo = Ordo::open_with_connections(settings, settings.max_connections.min(2)).await?;
    // `--now` says which orders are due; what the run writes carries the time it runs at.
    let as_of = args.now.unwrap_or_else(|| ordo.clock.now());
    let request = SweepRequest {
        timeout_minutes: args
            .timeout_minutes
            .unwrap_or(settings.unpaid_timeout_minutes),
        dry_run: args.dry_run,
        batch_size: args.batch_size.unwrap_or(settings.sweep_batch_size),
        limit: args.limit,
        now: args.now,
    };
    // With --json, stdout carries the summary alone.
    let mut out: Box<dyn Write + Send> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let cutoff = as_of - i64::from(request.timeout_minutes) * 60_000;
    let _ = writeln!(
        out,
        "cancel-unpaid-orders: timeout {} min (created before {}), dry run: {}, batch size {}{}",
        request.timeout_minutes,
        format_rfc3339(cutoff),
        if request.dry_run { "yes" } else { "no" },
        request.batch_size,
        request
            .limit
            .map(|l| format!(", limit {l}"))
            .unwrap_or_default(),
    );

    let bar = if std::io::stderr().is_terminal() && !args.verbose {
        let due = ordo
            .count_due_orders_as_of(request.timeout_minutes, as_of)
            .await?;
        let due = request.limit.map_or(due as u64, |l| l.min(due as u64));
        let bar = ProgressBar::new(due);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} orders {per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };

    let stop = AtomicBool::new(false);
    let verbose = args.verbose;
    let (_, summary) = ordo
        .run_sweep(
            Actor::Operator,
            SweepTrigger::Cli,
            &request,
            &stop,
            |order, outcome| {
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
                if verbose {
                    let what = match outcome {
                        OrderOutcome::Cancelled => "cancelled".to_owned(),
                        OrderOutcome::WouldCancel => "would cancel".to_owned(),
                        OrderOutcome::Skipped => "skipped (no longer due)".to_owned(),
                        OrderOutcome::Failed(e) => format!("FAILED ({e})"),
                        OrderOutcome::FoundPaid => "paid (its provider says so)".to_owned(),
                        OrderOutcome::Deferred(why) => format!("deferred ({why})"),
                    };
                    let _ = writeln!(
                        out,
                        "{what}: order {} {} created {}, {} unit(s)",
                        order.id,
                        order.number,
                        format_rfc3339(order.created_at),
                        order.units
                    );
                }
            },
        )
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    ordo.db.close().await;

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print_summary(&mut out, &summary);
    }
    Ok(if summary.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(out: &mut dyn Write, s: &SweepSummary) {
    let seconds = s.duration_ms as f64 / 1000.0;
    let rate = format!("{:.3} s, {} orders/s", seconds, s.orders_per_second);
    let _ = if s.dry_run {
        writeln!(
            out,
            "dry run: would cancel {} order(s) of {} found; nothing was changed ({rate})",
            s.would_cancel, s.found
        )
    } else {
        writeln!(
            out,
            "found {}, cancelled {}, skipped {}, errors {}, units released {} ({rate})",
            s.found, s.cancelled, s.skipped, s.errors, s.units_released
        )
    };
    if s.queried > 0 || s.deferred > 0 {
        let _ = writeln!(
            out,
            "asked payment providers {} time(s): found paid {}, closed {}, deferred {}",
            s.queried, s.found_paid, s.closed, s.deferred
        );
    }
    for d in &s.deferrals {
        let _ = writeln!(
            out,
            "deferred: order {} {}: {}",
            d.order_id, d.number, d.error
        );
    }
    for f in &s.failures {
        let _ = writeln!(
            out,
            "failed: order {} {}: {}",
            f.order_id, f.number, f.error
        );
    }
    if let Some(why) = &s.stopped {
        let _ = writeln!(out, "stopped early: {why}");
    }
}
