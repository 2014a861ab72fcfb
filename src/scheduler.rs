//! The built-in scheduler: runs the unpaid-order sweep every interval until shutdown.
//! On shutdown the sweep finishes the batch in hand and stops. Several schedulers on one
//! PostgreSQL database share the work safely: each batch is claimed with
//! `FOR UPDATE SKIP LOCKED`, so none is a leader and none cancels an order twice.

use crate::Ordo;
use crate::sweep::SweepRequest;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Runs the sweep now and then every `interval` until `shutdown`.
pub async fn run_sweeps(ordo: Ordo, request: SweepRequest, interval: Duration, shutdown: Shutdown) {
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
        let summary = ordo
            .cancel_unpaid_orders(&request, shutdown.flag(), |_, _| {})
            .await;
        if summary.errors > 0 {
            tracing::warn!(errors = summary.errors, "scheduled sweep had failures");
        }
    }
    tracing::info!("scheduler stopped");
}
