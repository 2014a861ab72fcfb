//! The console in a real headless Chromium (Debian's `chromium` and `chromedriver`), driven
//! over WebDriver by fantoccini against the real app on a random port: sign in, find an
//! order, cancel it, watch an order appear in "expiring soon" and the sweep cancel it, run
//! the sweep and see a stale preview refused, settle a late payment, adjust stock, switch
//! to Chinese and back, a customer token refused, a forged cross-site post refused. Every
//! page is checked with axe-core (no serious or critical violation), and screenshots are
//! saved under `target/console-screenshots/`.
//!
//! Without Chromium the test says `skipped: chromium missing` and passes, unless
//! `ORDO_REQUIRE_CHROMIUM=1` (CI) makes that a failure.

use super::{
    english_labels_in, every_page, scheduled_sweep, session_cookie, shanghai_address, shop_customer,
};
use crate::api::TestApp;
use crate::helpers::{Backend, MINUTE, T0};
use fantoccini::{Client, ClientBuilder, Locator};
use ordo::domain::{NewOrder, OrderStatus, PaymentStatus, ProviderEvent, ProviderStatus};
use reqwest::StatusCode;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// axe-core, vendored from npm for the tests only (never served).
const AXE: &str = include_str!("../../fixtures/axe.min.js");

/// chromedriver and the browser it drives; both end with it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// chromedriver runs in a process group of its own, which the browser it starts joins:
    /// the whole group goes, also when a test fails before it could close the session.
    fn drop(&mut self) {
        // SAFETY: signals the process group this struct started, and nothing else.
        unsafe {
            libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts chromedriver and a headless Chromium with a fresh profile, or says why not.
async fn start_browser() -> Option<Browser> {
    let missing: Vec<&str> = [CHROMEDRIVER, CHROMIUM]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        if std::env::var("ORDO_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!(
                "ORDO_REQUIRE_CHROMIUM=1 but {missing:?} are missing (Debian: chromium chromium-driver)"
            );
        }
        eprintln!("skipped: chromium missing ({missing:?})");
        return None;
    }
    ordo::install_tls_provider();
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "chrome".into());
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1280,900", "--lang=en-US",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let client = loop {
        let attempt = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => break client,
            Err(err) if started.elapsed() < Duration::from_secs(20) => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("could not start Chromium through chromedriver: {err}"),
        }
    };
    Some(Browser {
        client,
        driver,
        _profile: profile,
    })
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// The app, the browser, and what the scenario needs of both.
struct Scenario {
    app: TestApp,
    browser: Browser,
    shots: PathBuf,
}

impl Scenario {
    fn client(&self) -> &Client {
        &self.browser.client
    }

    async fn goto(&self, path: &str) {
        self.client()
            .goto(&format!("{}{path}", self.app.base))
            .await
            .expect("navigate");
    }

    /// The page's visible text; empty while a navigation is under way.
    async fn text(&self) -> String {
        match self.client().find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Goes to `path` and returns its visible text once the page has rendered as a console
    /// page in `lang`: the address is still `path`, and the page has the console's
    /// navigation and a heading. A check that something is absent is made on this text,
    /// never on an error page or on a page still loading.
    async fn rendered(&self, path: &str, lang: &str) -> String {
        self.goto(path).await;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self
                .client()
                .execute(
                    "const h = document.querySelector('main#main h1');
                     const slips = document.body.classList.contains('slips');
                     return document.readyState === 'complete'
                         && (document.querySelector('header.top nav') !== null || slips)
                         && h !== null && h.innerText.trim() !== ''
                         ? [document.documentElement.lang, document.body.innerText] : null;",
                    vec![],
                )
                .await;
            if let Ok(serde_json::Value::Array(page)) = &page {
                assert_eq!(self.path().await, path, "{path} went elsewhere");
                assert_eq!(page[0], lang, "{path} is not in {lang}");
                return page[1].as_str().expect("the page's text").to_owned();
            }
            assert!(
                Instant::now() < until,
                "{path} did not render as a console page: {page:?}; it says:\n{}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn path(&self) -> String {
        let url = self.client().current_url().await.expect("url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits until the page's text satisfies `ready` (up to `seconds`).
    async fn wait_for_text(
        &self,
        seconds: u64,
        what: &str,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let until = Instant::now() + Duration::from_secs(seconds);
        loop {
            let text = self.text().await;
            if ready(&text) {
                return text;
            }
            if Instant::now() > until {
                panic!("waited {seconds} s for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The visible text of the first element matching `css`.
    async fn text_of(&self, css: &str) -> String {
        self.client()
            .find(Locator::Css(css))
            .await
            .expect(css)
            .text()
            .await
            .expect("element text")
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.client().find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.client()
            .find(Locator::Css(css))
            .await
            .expect(css)
            .click()
            .await
            .expect("click");
    }

    async fn shot(&self, name: &str) {
        let png = self.client().screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Runs axe-core on the page: no serious or critical violation.
    async fn accessible(&self, page: &str) {
        let loaded = self
            .client()
            .execute("return typeof window.axe !== 'undefined';", vec![])
            .await
            .expect("script");
        if loaded != serde_json::Value::Bool(true) {
            self.client()
                .execute(&format!("{AXE}\n;return true;"), vec![])
                .await
                .expect("inject axe");
        }
        let found = self
            .client()
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                   .then(r => done(JSON.stringify(r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => ({id: v.id, impact: v.impact, help: v.help,
                                 nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))})))))
                   .catch(e => done('axe failed: ' + e));",
                vec![],
            )
            .await
            .expect("axe");
        let found = found.as_str().unwrap_or("").to_owned();
        assert_eq!(found, "[]", "accessibility violations on {page}: {found}");
    }

    async fn sign_in(&self, token: &str) {
        self.goto("/console/login").await;
        self.fill("#token", token).await;
        self.click("form.card button[type=submit]").await;
    }
}

/// The shop's last days: orders placed and paid on each, and sweeps that cancelled some,
/// so the dashboard's charts have something to show.
async fn history(app: &TestApp, products: &[i64]) {
    let shop = &app.shop;
    for day in (1..8).rev() {
        for i in 0..(3 + day % 4) {
            shop.ordo
                .clock
                .set(T0 - day * 24 * 60 * MINUTE + i * 37 * MINUTE);
            let placed = shop
                .ordo
                .place_order(
                    shop.owner(),
                    &NewOrder::from_lines(
                        shop.customer.id,
                        &[(products[(i as usize) % products.len()], 1 + i % 2)],
                        None,
                    ),
                )
                .await
                .expect("order");
            if i % 3 != 2 {
                shop.pay(&placed).await;
            }
        }
    }
    for hours_ago in [30, 20, 9, 4] {
        shop.ordo.clock.set(T0 - hours_ago * 60 * MINUTE);
        scheduled_sweep(shop).await;
    }
    shop.ordo.clock.set(T0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_in_a_browser() {
    let Some(browser) = start_browser().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    let s = Scenario {
        app,
        browser,
        shots: screenshot_dir(),
    };
    let shop = &s.app.shop;
    let mug = shop.product(100, 1_250).await;
    let cap = shop.product(4, 1_800).await;
    let tee = shop.product(200, 2_500).await;
    history(&s.app, &[mug.id, tee.id]).await;
    let mug_stock = shop.stock(mug.id).await;
    let order = shop
        .ordo
        .place_order(
            shop.owner(),
            &NewOrder::from_lines(
                shop.customer.id,
                &[(mug.id, 2), (cap.id, 1)],
                Some("please gift wrap <b>thanks</b>".into()),
            ),
        )
        .await
        .expect("order");
    let id = order.order.order.id;
    let number = order.order.order.number.clone();

    // A customer token is refused, with the reason.
    s.sign_in(&shop.customer_token).await;
    s.wait_for_text(10, "the refusal", |t| {
        t.contains("Customer tokens cannot sign in")
    })
    .await;
    assert_eq!(s.path().await, "/console/login");
    s.accessible("the sign-in page").await;

    // Sign in.
    s.sign_in(&shop.staff_token).await;
    s.wait_for_text(10, "the dashboard", |t| t.contains("Unpaid orders"))
        .await;
    assert_eq!(s.path().await, "/console/");
    s.accessible("the dashboard").await;
    s.shot("dashboard-en").await;
    s.client().set_window_size(375, 900).await.expect("resize");
    s.goto("/console/").await;
    s.accessible("the dashboard at 375 px").await;
    s.shot("dashboard-375-en").await;
    s.client().set_window_size(1280, 900).await.expect("resize");

    // Find an order by its number.
    s.goto("/console/orders").await;
    s.fill("#q", &number).await;
    s.click("form.search button").await;
    s.wait_for_text(10, "the order page", |t| {
        t.contains(&number) && t.contains("Timeline")
    })
    .await;
    assert_eq!(s.path().await, format!("/console/orders/{id}"));
    s.accessible("an order").await;
    s.shot("order-en").await;

    // Cancel it with a reason: stock goes back, the timeline grows.
    let entries = s
        .client()
        .find_all(Locator::Css("#timeline li"))
        .await
        .expect("timeline")
        .len();
    assert_eq!(shop.stock(mug.id).await, mug_stock - 2);
    s.fill("#reason-cancel", "customer called to cancel").await;
    s.click("form.action-cancel button").await;
    s.wait_for_text(10, "the cancellation", |t| {
        t.contains("the order is now Cancelled")
    })
    .await;
    assert_eq!(shop.status(id).await, OrderStatus::Cancelled);
    assert_eq!(shop.stock(mug.id).await, mug_stock);
    assert_eq!(shop.stock(cap.id).await, 4);
    let grown = s
        .client()
        .find_all(Locator::Css("#timeline li"))
        .await
        .expect("timeline")
        .len();
    assert!(grown >= entries + 2, "{entries} -> {grown}");
    assert!(s.text().await.contains("customer called to cancel"));

    // Expiring soon: an order placed now appears without reloading, its countdown ticking.
    s.goto("/console/expiring").await;
    s.accessible("expiring soon").await;
    let soon = shop.order(&[(tee.id, 1)]).await;
    let soon_number = soon.order.order.number.clone();
    s.wait_for_text(15, "the new order in the list", |t| {
        t.contains(&soon_number)
    })
    .await;
    let countdown = format!(
        "span[data-deadline=\"{}\"]",
        soon.order.order.created_at + 30 * MINUTE
    );
    let first = s.text_of(&countdown).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let later = s.text_of(&countdown).await;
    assert_ne!(first, later, "the countdown does not tick");
    assert!(first.contains("min"), "{first}");

    // The sweep: preview what is due, see "run now" refuse a stale preview, run it.
    shop.ordo.clock.advance(15 * MINUTE);
    let next = shop.order(&[(mug.id, 3)]).await;
    shop.ordo.clock.advance(16 * MINUTE);
    s.goto("/console/sweep").await;
    let preview = s
        .wait_for_text(10, "the preview", |t| t.contains("Would cancel"))
        .await;
    assert!(preview.contains(&soon_number) && !preview.contains(&next.order.order.number));
    s.accessible("the sweep preview").await;
    s.shot("sweep-en").await;
    // The next order becomes due after the preview.
    shop.ordo.clock.advance(20 * MINUTE);
    s.click("#run-now").await;
    let fresh = s
        .wait_for_text(10, "the refusal of a stale preview", |t| {
            t.contains("changed since the preview")
        })
        .await;
    assert!(fresh.contains(&next.order.order.number));
    assert_eq!(shop.status(soon.order.order.id).await, OrderStatus::Pending);
    s.click("#run-now").await;
    s.wait_for_text(10, "the run", |t| {
        t.contains("The sweep cancelled 2 order(s)")
    })
    .await;
    assert_eq!(
        shop.status(soon.order.order.id).await,
        OrderStatus::Cancelled
    );
    assert_eq!(
        shop.status(next.order.order.id).await,
        OrderStatus::Cancelled
    );
    // ... and the order left "expiring soon".
    let list = s.rendered("/console/expiring", "en").await;
    assert!(!list.contains(&soon_number), "{list}");
    s.goto(&format!("/console/orders/{}", soon.order.order.id))
        .await;
    assert!(s.text().await.contains("system:expiry"));

    // Settle a late payment.
    let late = shop.order(&[(tee.id, 1)]).await;
    shop.ordo
        .cancel_order(shop.staff(), late.order.order.id, Some("duplicate".into()))
        .await
        .unwrap();
    shop.ordo
        .apply_provider_event(&ProviderEvent {
            event_id: "evt-browser-late".into(),
            payment_id: late.payment.id,
            status: ProviderStatus::Succeeded,
            amount_cents: late.payment.amount_cents,
        })
        .await
        .unwrap();
    s.goto("/console/late-payments").await;
    s.accessible("late payments").await;
    s.fill(&format!("#ref-{}", late.payment.id), "RF-2026-1")
        .await;
    s.click(&format!(
        "form[action$=\"/{}/settle\"] button",
        late.payment.id
    ))
    .await;
    s.wait_for_text(10, "the settlement", |t| t.contains("is marked refunded"))
        .await;
    let settled = shop
        .ordo
        .order(shop.staff(), late.order.order.id)
        .await
        .unwrap();
    let payment = settled
        .payments
        .iter()
        .find(|p| p.id == late.payment.id)
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Refunded);
    assert_eq!(payment.refund_ref.as_deref(), Some("RF-2026-1"));

    // Adjust stock: the ledger's newest row carries the new balance.
    s.goto(&format!("/console/products/{}", cap.id)).await;
    s.accessible("a product").await;
    s.fill("#delta", "5").await;
    s.fill("#adjust-reason", "recount").await;
    s.click("#adjust button").await;
    s.wait_for_text(10, "the adjustment", |t| t.contains("Stock is now 9"))
        .await;
    assert_eq!(shop.stock(cap.id).await, 9);
    let newest = s.text_of("#ledger tbody tr").await;
    assert!(newest.contains("+5") && newest.ends_with('9'), "{newest}");

    // Every page in English passes axe.
    let pending = shop.order(&[(tee.id, 2), (mug.id, 1)]).await;
    for page in every_page(pending.order.order.id, tee.id, shop.customer.id) {
        s.goto(&page).await;
        s.accessible(&page).await;
    }

    // Switch to Chinese: every page translated (no English label), accessible; screenshots
    // with something due in the preview.
    shop.ordo.clock.advance(31 * MINUTE);
    shop.order(&[(cap.id, 1)]).await;
    s.goto("/console/").await;
    s.click("header form[action=\"/console/lang\"] button")
        .await;
    s.wait_for_text(10, "the Chinese dashboard", |t| t.contains("仪表盘"))
        .await;
    for page in every_page(pending.order.order.id, tee.id, shop.customer.id) {
        let text = s.rendered(&page, "zh-CN").await;
        let leaked = english_labels_in(&text);
        assert!(leaked.is_empty(), "{page} shows English labels: {leaked:?}");
        s.accessible(&page).await;
    }
    s.goto("/console/").await;
    s.shot("dashboard-zh").await;
    s.goto(&format!("/console/orders/{id}")).await;
    s.shot("order-zh").await;
    s.goto("/console/sweep").await;
    assert!(s.text().await.contains("将取消"));
    s.shot("sweep-zh").await;
    s.client().set_window_size(375, 900).await.expect("resize");
    s.goto("/console/").await;
    s.shot("dashboard-375-zh").await;
    s.client().set_window_size(1280, 900).await.expect("resize");
    // ... and back.
    s.click("header form[action=\"/console/lang\"] button")
        .await;
    s.wait_for_text(10, "the English dashboard", |t| t.contains("Dashboard"))
        .await;

    // A forged cross-site post carrying the session cookie is refused.
    let cookie = s
        .client()
        .get_named_cookie("ordo_session")
        .await
        .expect("session cookie");
    let cookie = format!("ordo_session={}", cookie.value());
    let forger = crate::helpers::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let response = forger
            .post(format!(
                "{}/console/orders/{}/cancel",
                s.app.base, pending.order.order.id
            ))
            .header("cookie", &cookie)
            .header(name, value)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("reason=forged")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(session_cookie(response.headers()).is_none());
    }
    assert_eq!(
        shop.status(pending.order.order.id).await,
        OrderStatus::Pending
    );
    shop.assert_check_clean().await;

    // Sign out.
    s.click("header form[action=\"/console/logout\"] button")
        .await;
    s.wait_for_text(10, "the sign-in page", |t| t.contains("You are signed out"))
        .await;
    s.goto("/console/orders").await;
    assert_eq!(s.path().await, "/console/login");
    // Chromium quits with its session; the drop ends whatever is left.
    let _ = s.browser.client.clone().close().await;
}

/// The PDF's first page as a greyscale image (pdftoppm, from Debian's poppler-utils): width,
/// height and one byte a pixel; also written as a PNG beside the screenshots.
fn first_page(pdf: &[u8], png: &Path) -> (usize, usize, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("slip.pdf");
    std::fs::write(&file, pdf).expect("write the PDF");
    let run = |args: &[&str]| {
        let out = Command::new("pdftoppm")
            .args(args)
            .output()
            .expect("pdftoppm (Debian: poppler-utils)");
        assert!(
            out.status.success(),
            "pdftoppm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let pdf_path = file.display().to_string();
    let prefix = png.with_extension("");
    run(&[
        "-png",
        "-r",
        "60",
        "-f",
        "1",
        "-l",
        "1",
        "-singlefile",
        &pdf_path,
        &prefix.display().to_string(),
    ]);
    // PGM on stdout: "P5\n<width> <height>\n255\n" and the pixels.
    let pgm = run(&["-gray", "-r", "60", "-f", "1", "-l", "1", &pdf_path]);
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        let start = at;
        while !pgm[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&pgm[start..at]).into_owned());
        at += 1;
    }
    assert_eq!(fields[0], "P5");
    let (width, height): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (width, height, pgm[at..].to_vec())
}

/// The PDF's text (pdftotext).
fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("slip.pdf");
    std::fs::write(&file, pdf).expect("write the PDF");
    let out = Command::new("pdftotext")
        .args(["-layout", &file.display().to_string(), "-"])
        .output()
        .expect("pdftotext (Debian: poppler-utils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_addresses_and_slips_in_the_shops_time_zone() {
    let Some(browser) = start_browser().await else {
        return;
    };
    let shanghai: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.with_locale(shanghai, Some("CNY"))).await;
    let s = Scenario {
        app,
        browser,
        shots: screenshot_dir(),
    };
    let shop = &s.app.shop;
    let tea = shop
        .ordo
        .create_product(
            shop.staff(),
            &ordo::domain::NewProduct {
                sku: "TEA-LJ-250".into(),
                name: "明前龙井 250克".into(),
                price_cents: 16_800,
                currency: "CNY".into(),
                stock: 50,
            },
        )
        .await
        .unwrap();
    let customer = shop_customer(shop, "shop-user-1").await;
    // 2026-11-25T23:30:00Z: 07:30 on the 26th in Shanghai. A paid order, with an address.
    let late_evening = T0 + 14 * 60 * MINUTE + 30 * MINUTE;
    shop.ordo.clock.set(late_evening);
    let mut new = NewOrder::from_lines(customer.id, &[(tea.id, 2)], Some("请在工作日送达".into()));
    new.shipping_address = Some(shanghai_address());
    let placed = shop
        .ordo
        .place_order(ordo::domain::Actor::Customer(customer.id), &new)
        .await
        .unwrap();
    shop.pay(&placed).await;
    let id = placed.order.order.id;
    let number = placed.order.order.number.clone();
    shop.ordo.clock.set(late_evening + 60 * MINUTE);

    s.sign_in(&shop.staff_token).await;
    s.wait_for_text(10, "the dashboard", |t| t.contains("Unpaid orders"))
        .await;
    // The order shows Shanghai's date and time, and counts in the 26th's bar.
    let list = s.rendered("/console/orders", "en").await;
    assert!(list.contains("26 Nov 2026, 07:30 UTC+8"), "{list}");
    assert!(list.contains("¥336.00"), "{list}");
    s.goto("/console/").await;
    let bars = s
        .client()
        .execute(
            "return Array.from(document.querySelectorAll('#orders-per-day rect title'))
                 .map(t => t.textContent);",
            vec![],
        )
        .await
        .expect("bars");
    let bars: Vec<String> = serde_json::from_value(bars).unwrap();
    assert_eq!(
        bars.last().map(String::as_str),
        Some("26 Nov: 1"),
        "{bars:?}"
    );
    assert!(bars.contains(&"25 Nov: 0".to_owned()), "{bars:?}");
    s.shot("dashboard-shanghai-en").await;

    // Customers: search, the customer's page, the order with its address.
    s.goto("/console/customers").await;
    s.fill("#q", "13800138000").await;
    s.click("form.search button").await;
    s.wait_for_text(10, "the customer found", |t| t.contains("shop-user-1"))
        .await;
    s.accessible("customers").await;
    s.shot("customers-en").await;
    s.click("#customers tbody a").await;
    s.wait_for_text(10, "the customer's page", |t| t.contains(&number))
        .await;
    s.accessible("a customer").await;
    s.goto(&format!("/console/orders/{id}")).await;
    let page = s
        .wait_for_text(10, "the order page", |t| t.contains("Ship to"))
        .await;
    for shown in [
        "王小明",
        "138 0013 8000",
        "世纪大道 100 号 12 楼",
        "上海市 浦东新区",
    ] {
        assert!(page.contains(shown), "the order page lacks {shown}: {page}");
    }
    s.accessible("an order with its address").await;
    s.shot("order-address-en").await;

    // The packing slip prints: a PDF from Chromium, its first page as an image.
    s.click("#packing-slip").await;
    s.wait_for_text(10, "the packing slip", |t| t.contains("Packing slip"))
        .await;
    s.accessible("a packing slip").await;
    let pdf = s
        .client()
        .print(
            fantoccini::wd::PrintConfiguration::builder()
                .build()
                .expect("print settings"),
        )
        .await
        .expect("print to PDF");
    assert!(pdf.starts_with(b"%PDF"), "not a PDF");
    std::fs::write(s.shots.join("packing-slip.pdf"), &pdf).expect("write the PDF");
    let text = pdf_text(&pdf);
    for printed in [
        number.as_str(),
        "王小明",
        "世纪大道 100 号 12 楼",
        "TEA-LJ-250",
        "明前龙井",
    ] {
        assert!(
            text.contains(printed),
            "the printed slip lacks {printed}: {text}"
        );
    }
    assert!(
        !text.contains("Print"),
        "the print button is not printed: {text}"
    );
    let (width, height, pixels) = first_page(&pdf, &s.shots.join("packing-slip.png"));
    assert!(width > 300 && height > 400, "{width}x{height}");
    // Ink on the page: the address box, the table, the text; and mostly paper.
    let dark = pixels.iter().filter(|p| **p < 128).count();
    let share = dark as f64 / pixels.len() as f64;
    assert!(
        (0.005..0.3).contains(&share),
        "{:.3} of the page is dark",
        share
    );
    // The ink starts near the top (the slip fills the page from its top margin).
    let first_dark_row = pixels
        .chunks(width)
        .position(|row| row.iter().any(|p| *p < 128));
    assert!(
        first_dark_row.is_some_and(|r| r < height / 5),
        "{first_dark_row:?} of {height}"
    );

    // A sheet of every paid order, and the new pages in Chinese: translated, accessible.
    s.goto("/console/packing-slips").await;
    s.wait_for_text(10, "the sheet", |t| t.contains(&number))
        .await;
    s.accessible("the packing slips of paid orders").await;
    s.goto("/console/").await;
    s.click("header form[action=\"/console/lang\"] button")
        .await;
    s.wait_for_text(10, "the Chinese dashboard", |t| t.contains("仪表盘"))
        .await;
    let order_zh = s.rendered(&format!("/console/orders/{id}"), "zh-CN").await;
    assert!(
        order_zh.contains("2026年11月26日 07:30 UTC+8"),
        "{order_zh}"
    );
    assert!(order_zh.contains("¥336.00"));
    for page in [
        "/console/customers".to_owned(),
        "/console/customers?q=%E7%8E%8B".to_owned(),
        format!("/console/customers/{}", customer.id),
        format!("/console/orders/{id}"),
        format!("/console/orders/{id}/packing-slip"),
        "/console/packing-slips".to_owned(),
    ] {
        let text = s.rendered(&page, "zh-CN").await;
        let leaked = english_labels_in(&text);
        assert!(leaked.is_empty(), "{page} shows English labels: {leaked:?}");
        s.accessible(&page).await;
    }
    s.goto(&format!("/console/orders/{id}")).await;
    s.shot("order-address-zh").await;
    s.goto(&format!("/console/orders/{id}/packing-slip")).await;
    s.shot("packing-slip-zh").await;
    let _ = s.browser.client.clone().close().await;
}
