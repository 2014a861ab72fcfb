//! Backups as an operator takes them: `ordo backup` while orders pour in, a backup killed
//! half-way, restores refused or done, `--backup-first`, and scheduled snapshots.

use crate::helpers::{Backend, MINUTE, T0, TestDatabase, TestShop};
use crate::on_both_databases;
use crate::service::serve;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

on_both_databases!(
    backup_first_writes_its_backup_before_the_first_order_is_cancelled,
    restore_into_a_database_that_holds_anything_is_refused_and_changes_nothing,
);

fn ordo(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env("ORDO_DATABASE_URL", url)
        .env("ORDO_LOG", "warn")
        .env_remove("ORDO_CONFIG")
        .env_remove("ORDO_BACKUP_DIR")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ordo")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sqlite_file(url: &str) -> PathBuf {
    ordo::db::sqlite_path(url)
}

/// `PRAGMA integrity_check` of a file, as SQLite says it.
async fn integrity(path: &Path) -> String {
    let db = ordo::Db::open_sqlite_read_only(path).await.expect("open");
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(db.pool())
        .await
        .expect("integrity_check");
    db.close().await;
    rows.join("; ")
}

async fn ids_in(path: &Path, sql: &'static str) -> Vec<i64> {
    let db = ordo::Db::open_sqlite_read_only(path).await.expect("open");
    let ids = sqlx::query_scalar(sql)
        .fetch_all(db.pool())
        .await
        .expect(sql);
    db.close().await;
    ids
}

/// A backup taken while 16 clients place orders as fast as the server answers: restored
/// into a new database, it passes `ordo check` and holds every order acknowledged before
/// the backup began.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_full_load_holds_every_order_acknowledged_before_it() {
    let shop = TestShop::new(Backend::Sqlite).await;
    let product = shop.product(1_000_000, 100).await;
    let (mut server, base) = serve(
        &shop,
        &[
            ("ORDO_MAX_PENDING_ORDERS_PER_CUSTOMER", "0"),
            ("ORDO_MAX_UNITS_PER_ORDER", "0"),
        ],
    )
    .await;
    let acknowledged: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (base, token) = (base.clone(), shop.customer_token.clone());
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = crate::helpers::client();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let response = client
                    .post(format!("{base}/api/v1/orders"))
                    .bearer_auth(&token)
                    .json(&json!({"items": [{"product_id": product.id, "quantity": 1}]}))
                    .send()
                    .await
                    .expect("place");
                assert_eq!(response.status().as_u16(), 201);
                let placed: Value = response.json().await.unwrap();
                let id = placed["order"]["id"].as_i64().unwrap();
                acknowledged.lock().unwrap().push((Instant::now(), id));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("under-load.db");
    let began = Instant::now();
    let out = ordo(
        &shop.database.url,
        &["backup", "--to", file.to_str().unwrap()],
    );
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for client in clients {
        client.await.expect("client");
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), file.to_str().unwrap());
    let acknowledged = acknowledged.lock().unwrap().clone();
    let before: Vec<i64> = acknowledged
        .iter()
        .filter(|(at, _)| *at < began)
        .map(|(_, id)| *id)
        .collect();
    let during = acknowledged
        .iter()
        .filter(|(at, _)| *at >= began && *at <= ended)
        .count();
    assert!(
        before.len() > 100,
        "orders were placed before: {}",
        before.len()
    );
    assert!(during > 0, "orders kept coming while the backup ran");

    let restored = TestDatabase::create(Backend::Sqlite).await;
    let out = ordo(
        &restored.url,
        &["restore", "--from", file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("ordo check: ok"),
        "{}",
        text(&out.stdout)
    );
    let out = ordo(&restored.url, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let held = ids_in(&sqlite_file(&restored.url), "SELECT id FROM orders").await;
    let held: std::collections::HashSet<i64> = held.into_iter().collect();
    let missing: Vec<i64> = before
        .iter()
        .filter(|id| !held.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, not in it: {missing:?}"
    );
    eprintln!(
        "backup under load: {} orders acknowledged before it, {during} while it ran ({:.0} ms), {} in the copy",
        before.len(),
        (ended - began).as_secs_f64() * 1000.0,
        held.len()
    );
}

/// SIGKILL at any moment of a backup leaves nothing under the backup's name, or a whole
/// backup; the next backup is not hindered by what the killed one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_midway_leaves_no_file_under_its_name() {
    let shop = TestShop::new(Backend::Sqlite).await;
    let p = shop.product(100, 100).await;
    shop.order(&[(p.id, 1)]).await;
    // Some 60 MB of rows, so that a copy takes long enough to be killed in the middle.
    sqlx::raw_sql(
        "CREATE TABLE ballast (x BLOB);
         INSERT INTO ballast WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
         SELECT randomblob(200) FROM n;",
    )
    .execute(shop.ordo.db.pool())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("killed.db");
    let partial = dir.path().join("killed.db.partial");
    let mut killed_midway = 0;
    for delay_ms in [0u64, 5, 20, 60, 150] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["backup", "--to", file.to_str().unwrap()])
            .env("ORDO_DATABASE_URL", &shop.database.url)
            .env("ORDO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !partial.exists() && started.elapsed() < Duration::from_secs(20) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished_before_the_kill = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        if file.exists() {
            assert_eq!(
                integrity(&file).await,
                "ok",
                "a file under the name is whole"
            );
            assert!(!partial.exists() || !finished_before_the_kill);
            std::fs::remove_file(&file).unwrap();
        } else {
            killed_midway += 1;
        }
    }
    assert!(
        killed_midway >= 3,
        "only {killed_midway} kills fell inside a backup"
    );
    let out = ordo(
        &shop.database.url,
        &["backup", "--to", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(integrity(&file).await, "ok");
    assert!(!partial.exists(), "the killed backup's leftover is gone");
}

/// A database that holds anything is refused with exit status 2 and left byte for byte
/// (SQLite) or row for row (PostgreSQL) as it was; an empty one is filled.
async fn restore_into_a_database_that_holds_anything_is_refused_and_changes_nothing(
    backend: Backend,
) {
    let source = TestShop::new(Backend::Sqlite).await;
    let p = source.product(10, 100).await;
    source.order(&[(p.id, 2)]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.db");
    let out = ordo(
        &source.database.url,
        &["backup", "--to", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let target = TestShop::new(backend).await;
    let q = target.product(3, 500).await;
    target.order(&[(q.id, 1)]).await;
    let before = target.snapshot().await;
    let file_bytes = || {
        let main = sqlite_file(&target.database.url);
        let wal = PathBuf::from(format!("{}-wal", main.display()));
        // An absent write-ahead log and an empty one hold the same: nothing.
        (
            std::fs::read(&main).unwrap(),
            std::fs::read(&wal).unwrap_or_default(),
        )
    };
    let bytes = match backend {
        Backend::Sqlite => {
            target.ordo.db.close().await;
            Some(file_bytes())
        }
        Backend::Postgres => None,
    };
    let out = ordo(
        &target.database.url,
        &["restore", "--from", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    match backend {
        Backend::Sqlite => assert!(said.contains("not empty"), "{said}"),
        Backend::Postgres => assert!(said.contains("pg_restore"), "{said}"),
    }
    match bytes {
        Some(bytes) => assert!(file_bytes() == bytes, "the file is as it was"),
        None => assert_eq!(target.snapshot().await, before, "nothing changed"),
    }

    // Not a backup at all, or a missing file: refused too.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let empty = dir.path().join("new.db");
    let empty_url = format!("sqlite://{}", empty.display());
    for from in [junk.to_str().unwrap(), "/nonexistent/backup.db"] {
        let out = ordo(&empty_url, &["restore", "--from", from]);
        assert_eq!(out.status.code(), Some(2), "{from}: {}", text(&out.stderr));
        assert!(!empty.exists(), "{from}: nothing was made");
    }
    // An empty one (no file yet) is filled, migrated and checked.
    let out = ordo(&empty_url, &["restore", "--from", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(1 orders); ordo check: ok"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        ids_in(&empty, "SELECT quantity FROM order_items").await,
        [2],
        "the backup's order"
    );
}

/// `cancel-unpaid-orders --backup-first`: the backup in backup_dir holds every due order
/// still pending, so it was complete before the first one was cancelled; when the backup
/// cannot be written, nothing is cancelled. On PostgreSQL it is refused before anything.
async fn backup_first_writes_its_backup_before_the_first_order_is_cancelled(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(100, 100).await;
    for _ in 0..25 {
        shop.order(&[(p.id, 2)]).await;
    }
    let now = ordo::domain::format_rfc3339(T0 + 31 * MINUTE);
    let sweep = |extra: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
        command
            .args([
                "cancel-unpaid-orders",
                "--backup-first",
                "--now",
                &now,
                "--json",
            ])
            .env("ORDO_DATABASE_URL", &shop.database.url)
            .env("ORDO_LOG", "warn")
            .env_remove("ORDO_CONFIG")
            .current_dir(std::env::temp_dir());
        for (k, v) in extra {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let pending = "SELECT COUNT(*) FROM orders WHERE status = 'pending'";
    if backend == Backend::Postgres {
        let out = sweep(&[]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("pg_dump"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(shop.count(pending).await, 25, "nothing was cancelled");
        return;
    }
    // backup_dir under a plain file cannot be made: no backup, no sweep.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let unwritable = blocker.path().join("backups");
    let out = sweep(&[("ORDO_BACKUP_DIR", unwritable.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(shop.count(pending).await, 25, "nothing was cancelled");

    // The default: `backups` beside the database file.
    let out = sweep(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["cancelled"], 25);
    assert_eq!(shop.count(pending).await, 0);
    let dir = sqlite_file(&shop.database.url)
        .parent()
        .unwrap()
        .join("backups");
    let backups: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let name = backups[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("ordo-before-sweep-") && name.ends_with(".db"),
        "{name}"
    );
    assert!(text(&out.stderr).contains(&name), "{}", text(&out.stderr));
    let statuses = ids_in(
        &backups[0],
        "SELECT COUNT(*) FROM orders WHERE status = 'pending'",
    )
    .await;
    assert_eq!(statuses, [25], "every due order is pending in the backup");
    assert_eq!(
        ids_in(&backups[0], "SELECT COUNT(*) FROM sweep_runs").await,
        [0],
        "the backup precedes the sweep's run"
    );
}

/// Scheduled snapshots: one per interval, the newest `backup_keep` kept, each whole, and
/// other files in the directory left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_snapshots_keep_exactly_backup_keep() {
    let shop = TestShop::new(Backend::Sqlite).await;
    let p = shop.product(100, 100).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ordo-backup-by-hand.db"), b"kept").unwrap();
    let shutdown = ordo::scheduler::Shutdown::new();
    let job = tokio::spawn(ordo::backup::run_scheduled(
        shop.ordo.db.clone(),
        dir.path().to_owned(),
        Duration::from_millis(150),
        3,
        shutdown.clone(),
    ));
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    while seen.len() < 7 && started.elapsed() < Duration::from_secs(30) {
        shop.order(&[(p.id, 1)]).await;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.starts_with("ordo-snapshot-") && name.ends_with(".db") {
                seen.insert(name);
            }
        }
        let kept = snapshot_names(dir.path());
        assert!(kept.len() <= 3, "never more than backup_keep: {kept:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.trigger();
    job.await.unwrap();
    assert!(seen.len() >= 7, "snapshots taken: {seen:?}");
    let kept = snapshot_names(dir.path());
    let newest: Vec<String> = seen.iter().rev().take(3).rev().cloned().collect();
    assert_eq!(kept, newest, "exactly the newest three");
    for name in &kept {
        assert_eq!(integrity(&dir.path().join(name)).await, "ok", "{name}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("ordo-backup-by-hand.db")).unwrap(),
        b"kept"
    );
}

fn snapshot_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("ordo-snapshot-") && n.ends_with(".db"))
        .collect();
    names.sort();
    names
}

/// Scheduled snapshots are for SQLite: on PostgreSQL the setting is refused at start.
#[test]
fn snapshots_on_postgres_are_a_configuration_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["serve"])
        .env("ORDO_DATABASE_URL", "postgres://ordo@127.0.0.1:1/ordo")
        .env("ORDO_BACKUP_INTERVAL_MINUTES", "60")
        .env_remove("ORDO_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("pg_dump"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["check"])
        .env("ORDO_BACKUP_KEEP", "0")
        .env_remove("ORDO_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("backup_keep"),
        "{}",
        text(&out.stderr)
    );
}
