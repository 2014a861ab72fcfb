//! The built-in scheduler: every interval, the payment reminders, the reconciliation of
//! provider payments whose notification is late, the refunds to send or confirm through the
//! providers, and then the unpaid-order sweep, until shutdown.
//! On shutdown the sweep finishes the batch in hand and stops. Several schedulers on one
//! PostgreSQL database share the work safely: each batch is claimed with
//! `FOR UPDATE SKIP LOCKED`, so none is a leader and none cancels an order twice.

use crate::Ordo;
use crate::domain::Actor;
use crate::sweep::{SweepRequest, SweepTrigger};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Tells long-running work to stop: the flag is checked between sweep batches, the
/// channel wakes sleepers.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, _) = watch::channel(false);
        Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(tx),
        }
    }

    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    /// Resolves once shutdown is triggered.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Work that outlives the request that started it (a sweep started over HTTP): it sees
/// `shutdown`, and `ordo serve` awaits it before exiting.
#[derive(Clone)]
pub struct Jobs {
    shutdown: Shutdown,
    running: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Jobs {
    pub fn new(shutdown: Shutdown) -> Jobs {
        Jobs {
            shutdown,
            running: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    pub fn spawn(&self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(job);
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|h| !h.is_finished());
        running.push(handle);
    }

    /// Waits for every job (after `shutdown` was triggered, they stop early).
    pub async fn wait(&self) {
        let handles: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for handle in handles {
            let _ = handle.await;
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Runs the scheduled jobs now and then every `interval` until `shutdown`: the payment
/// reminders (unless off), then the sweep.
pub async fn run_jobs(ordo: Ordo, request: SweepRequest, interval: Duration, shutdown: Shutdown) {
    tracing::info!(
        interval_s = interval.as_secs_f64(),
        timeout_minutes = request.timeout_minutes,
        "scheduler started"
    );
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => break,
        }
        if shutdown.is_triggered() {
            break;
        }
        if !ordo.db.is_ready() {
            // No primary: wait for the next tick rather than fail batch after batch.
            continue;
        }
        match ordo.send_payment_reminders(shutdown.flag()).await {
            Ok(0) => {}
            Ok(sent) => tracing::info!(sent, "payment reminders sent"),
            Err(err) => tracing::warn!(error = %err, "payment reminders failed"),
        }
        match ordo.reconcile_open_payments(shutdown.flag()).await {
            Ok(done) if done.queried == 0 => {}
            Ok(done) => tracing::info!(
                queried = done.queried,
                found_paid = done.found_paid,
                closed = done.closed,
                deferred = done.deferred,
                "provider payments reconciled"
            ),
            Err(err) => tracing::warn!(error = %err, "reconciliation failed"),
        }
        match ordo.process_refunds(shutdown.flag()).await {
            Ok(done) if done.sent == 0 => {}
            Ok(done) => tracing::info!(
                sent = done.sent,
                succeeded = done.succeeded,
                refused = done.refused,
                "refunds worked on"
            ),
            Err(err) => tracing::warn!(error = %err, "refunds failed"),
        }
        match ordo
            .run_sweep(
                Actor::Scheduler,
                SweepTrigger::Scheduler,
                &request,
                shutdown.flag(),
                |_, _| {},
            )
            .await
        {
            Ok((_, summary)) if summary.errors > 0 => {
                tracing::warn!(errors = summary.errors, "scheduled sweep had failures");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "scheduled sweep could not start"),
        }
    }
    tracing::info!("scheduler stopped");
}
