//! ordo: an order and inventory service for online shops.
//!
//! Orders reserve stock atomically and never oversell; payments expire; every order moves
//! through one lifecycle ([`domain::lifecycle`]) with an audit trail; a sweep cancels orders
//! left unpaid and releases their stock. The same calls serve the CLI, the HTTP API and
//! the scheduler, on SQLite or PostgreSQL.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod context;
pub mod customers;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod inventory;
mod moves;
pub mod orders;
pub mod payments;
mod placement;
pub mod reports;
pub mod scheduler;
pub mod sweep;
mod sweep_cli;
pub mod telemetry;

pub use clock::Clock;
pub use config::Settings;
pub use db::Db;
pub use error::{Error, Result};

use std::sync::Arc;

/// Installs the TLS crypto provider (ring) for outbound HTTPS (webhooks), once per process.
/// Called before the first HTTP client is built; harmless to call again.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The rules that shape the order lifecycle: time limits, per-customer limits, events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long a payment stays open.
    pub payment_ttl_ms: i64,
    /// How long an order may stay unpaid before the sweep cancels it.
    pub unpaid_timeout_ms: i64,
    /// Most unpaid orders one customer may hold (0: no limit).
    pub max_pending_orders_per_customer: u32,
    /// Most units in one order (0: no limit).
    pub max_units_per_order: u32,
    /// How long before its unpaid deadline an order gets `order.payment_reminder`
    /// (0: never).
    pub payment_reminder_lead_ms: i64,
    /// Whether changes write events (the outbox).
    pub events: bool,
    /// Whether webhook endpoints may be `http` and private addresses (development).
    pub webhook_allow_private: bool,
    /// The provider of an order's first payment.
    pub default_payment_provider: domain::PaymentProvider,
    /// Provider calls in flight at once (per process).
    pub provider_concurrency: u32,
    /// Open provider payments without a notification this long are queried.
    pub reconcile_after_ms: i64,
    /// Late payments are refunded through their provider by themselves.
    pub auto_refund_late_payments: bool,
    /// Every order must give a shipping address.
    pub require_shipping_address: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            payment_ttl_ms: 30 * 60_000,
            unpaid_timeout_ms: 30 * 60_000,
            max_pending_orders_per_customer: 5,
            max_units_per_order: 100,
            payment_reminder_lead_ms: 10 * 60_000,
            events: true,
            webhook_allow_private: false,
            default_payment_provider: domain::PaymentProvider::Manual,
            provider_concurrency: 32,
            reconcile_after_ms: 5 * 60_000,
            auto_refund_late_payments: true,
            require_shipping_address: false,
        }
    }
}

/// The service: a database, the policy and a clock. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ordo {
    pub db: Db,
    pub policy: Policy,
    pub clock: Clock,
    /// Told after every commit that wrote events, so that dispatchers need not wait for
    /// their next poll.
    outbox: Arc<events::Wake>,
    placements: Arc<placement::Combiner>,
    token_uses: Arc<auth::TokenUses>,
    token_lookups: Arc<auth::TokenLookups>,
    /// The payment providers, and the gate every call to them goes through.
    providers: payments::Providers,
}

impl Ordo {
    pub fn new(db: Db, policy: Policy, clock: Clock) -> Ordo {
        let outbox = Arc::new(events::Wake::default());
        let placements = Arc::new(placement::Combiner::new(db.clone(), outbox.clone()));
        let providers = payments::Providers::new(
            Vec::new(),
            None,
            policy.provider_concurrency,
            std::time::Duration::from_secs(10),
            clock.clone(),
        );
        Ordo {
            db,
            policy,
            clock,
            outbox,
            placements,
            token_uses: Arc::default(),
            token_lookups: Arc::default(),
            providers,
        }
    }

    /// The same service with these payment providers.
    pub fn with_providers(mut self, providers: payments::Providers) -> Ordo {
        self.providers = providers;
        self
    }

    /// Commits a transaction that may have written events, and wakes the dispatchers.
    pub(crate) async fn commit(&self, tx: db::Tx) -> Result<()> {
        tx.commit().await?;
        self.outbox.written(&self.db).await;
        Ok(())
    }

    /// What dispatchers are woken by.
    pub fn outbox(&self) -> Arc<events::Wake> {
        self.outbox.clone()
    }

    /// Connects as the settings say and applies migrations.
    pub async fn open(settings: &Settings) -> Result<Ordo> {
        Self::open_with_connections(settings, settings.max_connections).await
    }

    /// Like [`Ordo::open`], with at most `max_connections` (one-shot commands need few; on
    /// SQLite every connection carries its own page cache).
    pub async fn open_with_connections(settings: &Settings, max_connections: u32) -> Result<Ordo> {
        // The keys first: a missing or malformed one stops ordo before it touches anything.
        let providers = payments::load_providers(settings, Clock::system())?;
        let db = Db::connect(&settings.database_url, max_connections).await?;
        db.migrate().await?;
        Ok(Ordo::new(db, settings.policy(), Clock::system()).with_providers(providers))
    }
}
