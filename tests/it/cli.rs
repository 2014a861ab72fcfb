//! The `ordo` binary as an operator runs it.

use crate::helpers::{Backend, TestDatabase, TestShop};
use crate::on_both_databases;
use std::process::{Command, Output};

on_both_databases!(
    migrate_twice_token_demo_and_check,
    check_exits_one_with_findings,
    tokens_runs_audit_and_events_from_the_command_line,
    customers_and_a_shop_in_china_from_the_command_line,
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
    for (url, says) in [
        ("postgres://u:pw@h1,,h2/ordo", "host 2: is empty"),
        ("postgres://h1:5432,h2:99999/ordo", "host 2: port \"99999\""),
        (
            "postgres://h1,h2/ordo?target_session_attrs=standby",
            "not supported",
        ),
        ("sqlite://one.db,two.db", "only for postgres"),
    ] {
        let out = ordo(url, &["check"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(
            !stderr.contains("pw@"),
            "the password stays hidden: {stderr}"
        );
    }
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

async fn tokens_runs_audit_and_events_from_the_command_line(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let url = &shop.database.url;
    let out = ordo(
        url,
        &[
            "token",
            "create",
            "--name",
            "frontend",
            "--role",
            "customer",
            "--expires-in",
            "90d",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("expires"), "{stdout}");
    let token = stdout.lines().last().unwrap().trim().to_owned();
    let created = shop.count("SELECT MAX(id) FROM api_tokens").await;
    // Listed without the token, with its expiry.
    let out = ordo(url, &["token", "list"]);
    let listing = text(&out.stdout);
    assert!(out.status.success());
    assert!(
        listing.contains("frontend") && !listing.contains(&token[5..]),
        "{listing}"
    );
    let out = ordo(url, &["token", "list", "--json"]);
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = rows.iter().find(|r| r["name"] == "frontend").unwrap();
    assert!(row["expires_at"].is_string());
    assert_eq!(row["state"], "active");
    // Revoked from the command line: refused at once.
    let out = ordo(url, &["token", "revoke", &created.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(matches!(
        shop.ordo.authenticate(&token).await,
        Err(ordo::Error::Unauthorized { .. })
    ));
    assert_eq!(
        ordo(url, &["token", "revoke", &created.to_string()])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        ordo(
            url,
            &[
                "token",
                "create",
                "--name",
                "x",
                "--role",
                "staff",
                "--expires-in",
                "5x"
            ]
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        ordo(url, &["token", "create", "--name", "x"]).status.code(),
        Some(2),
        "a role or a user"
    );

    // A sweep from the command line is a recorded run, by the operator.
    let p = shop.product(5, 100).await;
    shop.order(&[(p.id, 1)]).await;
    let now = ordo::domain::format_rfc3339(crate::helpers::T0 + 31 * crate::helpers::MINUTE);
    let out = ordo(url, &["cancel-unpaid-orders", "--now", &now]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ordo(url, &["sweeps", "list", "--json"]);
    let runs: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs[0]["trigger"], "cli");
    assert!(runs[0]["actor"].as_str().unwrap().starts_with("cli"));
    assert_eq!(runs[0]["cancelled"], 1);
    assert_eq!(runs[0]["state"], "finished");
    assert!(text(&ordo(url, &["sweeps", "list"]).stdout).contains("cli"));
    // The operator's actions are audited.
    let out = ordo(url, &["audit", "list", "--json"]);
    let actions: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for action in ["token.create", "token.revoke", "sweep.run"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    // The event log, as JSON lines.
    let out = ordo(url, &["events", "tail", "--after", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kinds: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["order.created", "order.expired"]);
    let out = ordo(
        url,
        &["events", "tail", "--type", "order.expired", "--after", "0"],
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert_eq!(
        ordo(url, &["events", "tail", "--type", "order.gone"])
            .status
            .code(),
        Some(2)
    );
    let out = ordo(url, &["webhooks", "list"]);
    assert!(out.status.success());
}

/// A stopped server or a misnamed database is said at once: which host, which database,
/// and why, with exit status 1 (not the pool's 30 s wait and "pool timed out").
#[test]
fn migrate_names_the_host_the_database_and_the_reason_at_once() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cases = vec![(
        format!("postgres://shop@127.0.0.1:{closed}/orders"),
        vec![
            format!("127.0.0.1:{closed}"),
            "\"orders\"".to_owned(),
            "connection refused".to_owned(),
        ],
    )];
    if let Some(server) = crate::helpers::postgres_url() {
        let missing = crate::helpers::replace_db_name(&server, "ordo_no_such_database");
        cases.push((
            missing,
            vec![
                "\"ordo_no_such_database\"".to_owned(),
                "no such database".to_owned(),
            ],
        ));
    }
    for (url, says) in cases {
        for command in [
            &["migrate"][..],
            &["check"],
            &["serve", "--listen", "127.0.0.1:0"],
        ] {
            let started = std::time::Instant::now();
            let out = ordo(&url, command);
            let took = started.elapsed();
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{url} {command:?}: {stderr}");
            assert!(
                took < std::time::Duration::from_secs(5),
                "{url} {command:?} took {took:?}"
            );
            for part in &says {
                assert!(
                    stderr.contains(part.as_str()),
                    "{url} {command:?}: {part} in {stderr}"
                );
            }
            assert!(!stderr.contains("pool timed out"), "{stderr}");
        }
    }
}

async fn customers_and_a_shop_in_china_from_the_command_line(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let url = database.url.clone();
    let out = ordo(&url, &["demo", "--locale", "zh-CN"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let demo = text(&out.stdout);
    for shown in [
        "CNY",
        "王小明",
        "time_zone = \"Asia/Shanghai\"",
        "currency = \"CNY\"",
    ] {
        assert!(
            demo.contains(shown),
            "the demo does not say {shown}: {demo}"
        );
    }
    let out = ordo(&url, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Create, update (the same customer), find, show, a token that places orders, erase.
    let upsert = |name: &str| {
        ordo(
            &url,
            &[
                "customers",
                "upsert",
                "--external-id",
                "cli-user-1",
                "--name",
                name,
                "--phone",
                "138 0013 8000",
            ],
        )
    };
    let out = upsert("Ada");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("created customer"));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = created["id"].as_i64().unwrap();
    let out = upsert("Ada Lovelace");
    assert!(text(&out.stderr).contains("updated customer"));
    let updated: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(updated["id"], id);
    let out = ordo(&url, &["customers", "list", "-q", "lovelace"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("cli-user-1"),
        "{}",
        text(&out.stdout)
    );
    let out = ordo(&url, &["customers", "show", &id.to_string()]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["phone"], "138 0013 8000");
    let out = ordo(
        &url,
        &["customers", "token", &id.to_string(), "--expires-in", "30d"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).lines().last().unwrap().trim().to_owned();
    let db = ordo::Db::connect(&url, 2).await.unwrap();
    let service = ordo::Ordo::new(db.clone(), ordo::Policy::default(), ordo::Clock::system());
    assert_eq!(service.authenticate(&token).await.unwrap().user.id, id);
    db.close().await;
    let out = ordo(&url, &["customers", "erase", &id.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ordo(&url, &["customers", "show", &id.to_string()]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["phone"], serde_json::Value::Null);
    assert_eq!(shown["display_name"], "[erased]");
    // Bad input: exit 1 with the field named; an unknown customer too.
    let out = ordo(
        &url,
        &["customers", "upsert", "--external-id", "x y", "--name", "A"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("external_id"));
    let out = ordo(&url, &["customers", "show", "999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("customer not found"));
}
