//! The test harness: each test gets its own database (a temporary SQLite file, or a fresh
//! PostgreSQL database when `ORDO_TEST_DATABASE_URL` is set), a staff user and a customer,
//! and a clock it controls.

use ordo::domain::{
    Actor, HistoryEntry, NewOrder, NewProduct, OrderStatus, Product, ProviderEvent, ProviderStatus,
    User, UserRole,
};
use ordo::orders::PlacedOrder;
use ordo::payments::EventOutcome;
use ordo::{Clock, Db, Ordo, Policy};
use sqlx::Row;
use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that switches the PostgreSQL tests on.
pub const PG_ENV: &str = "ORDO_TEST_DATABASE_URL";

/// 2026-11-25T09:00:00Z: where test clocks start.
pub const T0: i64 = 1_795_597_200_000;
pub const MINUTE: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server URL for tests, or `None` (and a note, once) when not configured.
pub fn postgres_url() -> Option<String> {
    static NOTE: Once = Once::new();
    match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            NOTE.call_once(|| {
                // Written past the test harness's capture so that it is seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: PostgreSQL tests skipped; set {PG_ENV}=postgres://postgres@127.0.0.1:5432/postgres to run them"
                );
            });
            None
        }
    }
}

/// A database made for one test and dropped after it.
pub struct TestDatabase {
    pub url: String,
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    /// Held for its Drop, which removes the directory.
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    /// Panics when PostgreSQL is asked for but not configured; `on_both_databases!`
    /// checks first.
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("ordo.db").display());
                TestDatabase {
                    url,
                    cleanup: Some(Cleanup::Dir(dir)),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_url().expect("ORDO_TEST_DATABASE_URL is not set");
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let name = format!(
                    "ordo_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    rand_suffix()
                );
                let admin = Db::connect(&admin_url, 1)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                let url = replace_db_name(&admin_url, &name);
                TestDatabase {
                    url,
                    cleanup: Some(Cleanup::Postgres { admin_url, name }),
                }
            }
        }
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// Swaps the database name in a PostgreSQL URL.
pub fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = &base[scheme_end..];
    let prefix = match host_part.find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(Cleanup::Postgres { admin_url, name }) = self.cleanup.take() {
            // Drop runs outside async; use a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = Db::connect(&admin_url, 1).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(admin.pool())
                        .await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// An HTTP client for talking to a test server.
pub fn client() -> reqwest::Client {
    client_builder().build().expect("http client")
}

pub fn client_builder() -> reqwest::ClientBuilder {
    ordo::install_tls_provider();
    reqwest::Client::builder()
}

/// The policy of test shops: the defaults, without the per-customer limits (tests that
/// are about the limits set them).
pub fn test_policy() -> Policy {
    Policy {
        max_pending_orders_per_customer: 0,
        max_units_per_order: 0,
        // Test receivers listen on loopback.
        webhook_allow_private: true,
        ..Policy::default()
    }
}

/// A shop with its own database, a staff user, a customer and a fixed clock at `T0`.
pub struct TestShop {
    pub ordo: Ordo,
    pub staff: User,
    pub customer: User,
    pub staff_token: String,
    pub customer_token: String,
    pub database: TestDatabase,
}

impl TestShop {
    pub async fn new(backend: Backend) -> TestShop {
        Self::with_pool(backend, 16).await
    }

    pub async fn with_pool(backend: Backend, connections: u32) -> TestShop {
        let database = TestDatabase::create(backend).await;
        let db = Db::connect(&database.url, connections)
            .await
            .expect("connect");
        db.migrate().await.expect("migrate");
        let ordo = Ordo::new(db, test_policy(), Clock::fixed(T0));
        let (staff, staff_token) = ordo
            .create_user_with_token("staff", UserRole::Staff)
            .await
            .expect("staff");
        let (customer, customer_token) = ordo
            .create_user_with_token("customer", UserRole::Customer)
            .await
            .expect("customer");
        TestShop {
            ordo,
            staff,
            customer,
            staff_token: staff_token.expose().to_owned(),
            customer_token: customer_token.expose().to_owned(),
            database,
        }
    }

    pub fn staff(&self) -> Actor {
        self.staff.actor()
    }

    pub fn owner(&self) -> Actor {
        self.customer.actor()
    }

    pub async fn another_customer(&self) -> User {
        self.ordo
            .create_user_with_token("someone else", UserRole::Customer)
            .await
            .expect("customer")
            .0
    }

    pub async fn product(&self, stock: i64, price_cents: i64) -> Product {
        static SKU: AtomicU32 = AtomicU32::new(0);
        self.ordo
            .create_product(
                self.staff(),
                &NewProduct {
                    sku: format!("SKU-{}", SKU.fetch_add(1, Ordering::SeqCst)),
                    name: "Test product".into(),
                    price_cents,
                    currency: "EUR".into(),
                    stock,
                },
            )
            .await
            .expect("create product")
    }

    pub fn new_order(&self, items: &[(i64, i64)]) -> NewOrder {
        NewOrder::from_lines(self.customer.id, items, None)
    }

    pub async fn order(&self, items: &[(i64, i64)]) -> PlacedOrder {
        self.ordo
            .place_order(self.owner(), &self.new_order(items))
            .await
            .expect("place order")
    }

    pub async fn pay(&self, placed: &PlacedOrder) -> EventOutcome {
        self.ordo
            .apply_provider_event(&ProviderEvent {
                event_id: format!("evt-{}-{}", placed.payment.id, rand_suffix()),
                payment_id: placed.payment.id,
                status: ProviderStatus::Succeeded,
                amount_cents: placed.payment.amount_cents,
            })
            .await
            .expect("payment event")
    }

    /// Pays an order through its open payment, as the provider would.
    pub async fn pay_order(&self, order_id: i64) -> EventOutcome {
        let order = self
            .ordo
            .order(self.staff(), order_id)
            .await
            .expect("order");
        let payment = order
            .payments
            .iter()
            .find(|p| p.status == ordo::domain::PaymentStatus::Pending)
            .expect("an open payment");
        self.ordo
            .apply_provider_event(&ProviderEvent {
                event_id: format!("evt-{}-{}", payment.id, rand_suffix()),
                payment_id: payment.id,
                status: ProviderStatus::Succeeded,
                amount_cents: payment.amount_cents,
            })
            .await
            .expect("payment event")
    }

    pub async fn stock(&self, product_id: i64) -> i64 {
        self.ordo.product(product_id).await.expect("product").stock
    }

    pub async fn ledger_sum(&self, product_id: i64) -> i64 {
        self.scalar(
            "SELECT CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM stock_movements WHERE product_id = $1",
            product_id,
        )
        .await
    }

    /// Runs a query with one integer parameter returning one integer.
    pub async fn scalar(&self, sql: &'static str, param: i64) -> i64 {
        sqlx::query(sql)
            .bind(param)
            .fetch_one(self.ordo.db.pool())
            .await
            .expect(sql)
            .try_get::<i64, _>(0)
            .expect("integer")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query(sql)
            .fetch_one(self.ordo.db.pool())
            .await
            .expect(sql)
            .try_get::<i64, _>(0)
            .expect("integer")
    }

    pub async fn status(&self, order_id: i64) -> OrderStatus {
        self.ordo
            .order(self.staff(), order_id)
            .await
            .expect("order")
            .order
            .status
    }

    pub async fn history(&self, order_id: i64) -> Vec<HistoryEntry> {
        self.ordo
            .order_history(self.staff(), order_id)
            .await
            .expect("history")
    }

    /// Moves named in the history, as `from->to` strings.
    pub async fn moves(&self, order_id: i64) -> Vec<String> {
        self.history(order_id)
            .await
            .iter()
            .map(|h| {
                format!(
                    "{}->{}",
                    h.from_status.as_deref().unwrap_or("none"),
                    h.to_status
                )
            })
            .collect()
    }

    /// Uses each token once and writes the uses. A token's last use is written whenever it
    /// authenticates (at most once a minute), allowed call or refused, so a test that proves
    /// that refused calls change nothing uses its tokens before its first snapshot.
    pub async fn use_tokens(&self, tokens: &[&str]) {
        for token in tokens {
            self.ordo.authenticate(token).await.expect("a valid token");
        }
        self.ordo
            .flush_token_uses()
            .await
            .expect("flush token uses");
    }

    pub async fn assert_check_clean(&self) {
        let report = self.ordo.check().await.expect("check runs");
        assert!(
            report.is_clean(),
            "ordo check found: {:#?}",
            report.findings
        );
    }

    /// A textual snapshot of every table of the database (whatever the migrations made,
    /// found in the catalogue), to prove that something changed nothing. Token uses noted in
    /// memory are written first. The console's counters are kept as one row per key on
    /// SQLite and as rows to be summed on PostgreSQL: they are compared as those sums.
    pub async fn snapshot(&self) -> String {
        self.snapshot_except(&[]).await
    }

    /// [`TestShop::snapshot`] without the tables named (which the caller checks itself).
    pub async fn snapshot_except(&self, skipped: &[&str]) -> String {
        self.ordo
            .flush_token_uses()
            .await
            .expect("flush token uses");
        let pool = self.ordo.db.pool();
        let catalogue = if self.database.url.starts_with("sqlite:") {
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name"
        } else {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
               AND table_name <> '_sqlx_migrations' ORDER BY 1"
        };
        let tables: Vec<String> = sqlx::query_scalar(catalogue)
            .fetch_all(pool)
            .await
            .expect("tables");
        assert!(tables.len() >= 19, "the catalogue lists {tables:?}");
        let mut out = String::new();
        for table in tables {
            if skipped.contains(&table.as_str()) {
                continue;
            }
            let sql = match table.as_str() {
                "order_status_counts" => "SELECT status, CAST(SUM(n) AS BIGINT) AS n
                     FROM order_status_counts GROUP BY status HAVING SUM(n) <> 0"
                    .to_owned(),
                "order_time_totals" => "SELECT quarter, currency, CAST(SUM(placed) AS BIGINT) AS placed,
                            CAST(SUM(paid) AS BIGINT) AS paid, CAST(SUM(paid_cents) AS BIGINT) AS paid_cents
                     FROM order_time_totals GROUP BY quarter, currency"
                    .to_owned(),
                _ => format!("SELECT * FROM {table}"),
            };
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .expect("snapshot");
            let mut lines: Vec<String> = rows
                .iter()
                .map(|row| {
                    use sqlx::Column;
                    row.columns()
                        .iter()
                        .map(|c| {
                            let i = c.ordinal();
                            row.try_get::<Option<i64>, _>(i)
                                .map(|v| format!("{v:?}"))
                                .or_else(|_| {
                                    row.try_get::<Option<String>, _>(i)
                                        .map(|v| format!("{v:?}"))
                                })
                                .or_else(|_| {
                                    row.try_get::<Option<bool>, _>(i).map(|v| format!("{v:?}"))
                                })
                                .or_else(|_| {
                                    row.try_get::<Option<f64>, _>(i).map(|v| format!("{v:?}"))
                                })
                                .unwrap_or_else(|e| {
                                    panic!("snapshot cannot read {table}.{}: {e}", c.name())
                                })
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            // Row order is the database's business; the rows are what count.
            lines.sort();
            out.push_str(&format!("{table}: {} rows\n", lines.len()));
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

/// Declares each named `async fn name(backend: Backend)` as two tests, `name::sqlite` and
/// `name::postgres` (the latter a no-op with a note when PostgreSQL is not configured).
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if $crate::helpers::postgres_url().is_some() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        }
    )*};
}
