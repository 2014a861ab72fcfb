//! Helpers the benchmarks share.
// Each benchmark compiles this module and uses part of it.
#![allow(dead_code)]

use ordo::Db;

/// The database a benchmark runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// `--backends postgres,sqlite`: the list after the flag.
pub fn backends(list: Option<String>) -> Vec<Backend> {
    list.expect("--backends postgres,sqlite")
        .split(',')
        .map(|b| match b.trim() {
            "postgres" => Backend::Postgres,
            "sqlite" => Backend::Sqlite,
            other => panic!("unknown backend {other}"),
        })
        .collect()
}

/// The PostgreSQL server benchmarks use: `ORDO_BENCH_DATABASE_URL`, or the local one.
pub fn admin_url() -> String {
    std::env::var("ORDO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `base` with its database name replaced by `db`.
pub fn pg_url(base: &str, db: &str) -> String {
    let (prefix, query) = match base.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (base, String::new()),
    };
    let host_start = prefix.find("://").map_or(0, |i| i + 3);
    let root = match prefix[host_start..].find('/') {
        Some(slash) => &prefix[..host_start + slash],
        None => prefix,
    };
    format!("{root}/{db}{query}")
}

/// Drops and creates database `name` on the benchmark server; returns its URL.
pub async fn fresh_pg_database(name: &str) -> String {
    let admin = admin_url();
    let db = Db::connect(&admin, 1).await.expect("connect to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(db.pool())
    .await
    .expect("drop database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(db.pool())
        .await
        .expect("create database");
    db.close().await;
    pg_url(&admin, name)
}

pub async fn execute(url: &str, sql: &str) {
    let db = Db::connect(url, 1).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    db.close().await;
}

pub async fn scalar(url: &str, sql: &str) -> i64 {
    let db = Db::connect(url, 1).await.expect("connect");
    let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    db.close().await;
    v
}

/// The `p`-th percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Subscribes a webhook endpoint at `hook` (a loopback receiver) to every event.
pub async fn subscribe(url: &str, hook: &str) {
    let db = Db::connect(url, 1).await.expect("connect");
    let policy = ordo::Policy {
        webhook_allow_private: true,
        ..Default::default()
    };
    let o = ordo::Ordo::new(db.clone(), policy, ordo::Clock::system());
    o.create_endpoint(
        ordo::domain::Actor::Operator,
        &ordo::events::endpoints::NewEndpoint {
            url: hook.to_owned(),
            ..Default::default()
        },
    )
    .await
    .expect("endpoint");
    db.close().await;
}
