//! The `ordo` binary as an operator runs it.

use crate::helpers::{Backend, TestDatabase, TestShop};
use crate::on_both_databases;
use std::process::{Command, Output};

on_both_databases!(
    migrate_twice_token_demo_and_check,
    check_exits_one_with_findings,
);

fn ordo(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env("ORDO_DATABASE_URL", url)
        .env_remove("ORDO_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ordo")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn migrate_twice_token_demo_and_check(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let url = database.url.clone();
    for _ in 0..2 {
        let out = ordo(&url, &["migrate"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = ordo(
        &url,
        &["token", "create", "--name", "ops", "--role", "staff"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.lines().last().expect("token line").trim().to_owned();
    assert!(token.starts_with("ordo_") && token.len() > 40, "{stdout}");

    // Only the hash is stored, and it authenticates.
    let db = ordo::Db::connect(&url, 2).await.unwrap();
    let service = ordo::Ordo::new(db.clone(), ordo::Policy::default(), ordo::Clock::system());
    let who = service.authenticate(&token).await.expect("token works");
    assert_eq!(who.user.name, "ops");
    assert!(service.authenticate("ordo_wrong").await.is_err());
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, [ordo::auth::token_hash(&token)]);
    assert!(!stored[0].contains(&token[5..]));
    db.close().await;

    let out = ordo(&url, &["demo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("customer token"));
    let out = ordo(&url, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("ok:"));
}

async fn check_exits_one_with_findings(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(5, 100).await;
    sqlx::query("UPDATE products SET stock = 99 WHERE id = $1")
        .bind(p.id)
        .execute(shop.ordo.db.pool())
        .await
        .unwrap();
    let out = ordo(&shop.database.url, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("ledger_equals_stock"),
        "{}",
        text(&out.stdout)
    );
    let out = ordo(&shop.database.url, &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["findings"][0]["check"], "ledger_equals_stock");
}

#[test]
fn bad_configuration_exits_two() {
    let out = ordo("mysql://nope", &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unsupported database URL"));
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("cancel") || text(&out.stdout).contains("check"));
}

#[test]
fn simulate_payment_signs_what_the_webhook_checks() {
    let run = |secret: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordo"));
        cmd.args([
            "simulate-payment",
            "--payment-id",
            "7",
            "--amount-cents",
            "2400",
            "--event-id",
            "evt-sim",
        ])
        .env_remove("ORDO_WEBHOOK_SECRET")
        .env_remove("ORDO_CONFIG")
        .current_dir(std::env::temp_dir());
        if let Some(secret) = secret {
            cmd.env("ORDO_WEBHOOK_SECRET", secret);
        }
        cmd.output().unwrap()
    };
    let out = run(Some("dev-secret"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let body = lines.next().unwrap();
    let signature = lines
        .next()
        .unwrap()
        .trim_start_matches("X-Ordo-Signature: ");
    assert_eq!(
        signature,
        ordo::http::sign_webhook(b"dev-secret", body.as_bytes())
    );
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["event_id"], "evt-sim");
    assert_eq!(event["status"], "succeeded");
    assert!(lines.next().unwrap().starts_with("curl "));
    let out = run(None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no secret is a configuration error"
    );
}
