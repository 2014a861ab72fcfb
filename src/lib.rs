//! ordo: an order and inventory service for online shops.
//!
//! Orders reserve stock atomically and never oversell; payments expire; every order moves
//! through one lifecycle ([`domain::lifecycle`]) with an audit trail; a sweep cancels orders
//! left unpaid and releases their stock. The same calls serve the CLI, the HTTP API and
//! the scheduler, on SQLite or PostgreSQL.

pub mod auth;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod http;
pub mod inventory;
pub mod orders;
pub mod payments;
pub mod scheduler;
pub mod sweep;
mod sweep_cli;
pub mod telemetry;

pub use clock::Clock;
pub use config::Settings;
pub use db::Db;
pub use error::{Error, Result};

/// Time limits that shape the order lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long a payment stays open.
    pub payment_ttl_ms: i64,
    /// How long an order may stay unpaid before the sweep cancels it.
    pub unpaid_timeout_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            payment_ttl_ms: 30 * 60_000,
            unpaid_timeout_ms: 30 * 60_000,
        }
    }
}

/// The service: a database, the policy and a clock. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ordo {
    pub db: Db,
    pub policy: Policy,
    pub clock: Clock,
}

impl Ordo {
    pub fn new(db: Db, policy: Policy, clock: Clock) -> Ordo {
        Ordo { db, policy, clock }
    }

    /// Connects as the settings say and applies migrations.
    pub async fn open(settings: &Settings) -> Result<Ordo> {
        Self::open_with_connections(settings, settings.max_connections).await
    }

    /// Like [`Ordo::open`], with at most `max_connections` (one-shot commands need few; on
    /// SQLite every connection carries its own page cache).
    pub async fn open_with_connections(settings: &Settings, max_connections: u32) -> Result<Ordo> {
        let db = Db::connect(&settings.database_url, max_connections).await?;
        db.migrate().await?;
        Ok(Ordo::new(db, settings.policy(), Clock::system()))
    }
}
