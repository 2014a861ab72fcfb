//! Expiring soon: unpaid orders by deadline (created_at + the unpaid timeout), soonest
//! first, each with a countdown that `console.js` ticks every second against the server's
//! clock; the rows refresh themselves (htmx polls [`rows`]) without reloading the page.

use super::i18n::{Lang, Texts};
use super::session::Console;
use super::{Chrome, Nav, PageResult, render};
use crate::domain::{Millis, format_rfc3339};
use askama::Template;

/// Orders the list shows.
const SHOWN: i64 = 100;

struct Row {
    id: i64,
    number: String,
    customer: i64,
    units: String,
    total: String,
    deadline: String,
    deadline_iso: String,
    deadline_ms: Millis,
    left: String,
    overdue: bool,
}

/// The `<tbody>` that htmx swaps, with everything a countdown needs.
#[derive(Template)]
#[template(path = "console/expiring_rows.html")]
struct Rows {
    t: &'static Texts,
    server_now: Millis,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console/expiring.html")]
struct Page {
    c: Chrome,
    t: &'static Texts,
    server_now: Millis,
    rows: Vec<Row>,
    /// Countdown formats for console.js: `{h}`, `{m}`, `{s}` replaced.
    format_hours: String,
    format_minutes: String,
}

async fn load(console: &Console) -> Result<(Millis, Vec<Row>), super::PageError> {
    let lang = console.lang;
    let now = console.ordo.clock.now();
    let orders = console
        .ordo
        .expiring_orders(console.actor(), SHOWN)
        .await
        .map_err(|e| console.fail(e))?;
    Ok((
        now,
        orders
            .into_iter()
            .map(|e| Row {
                id: e.order.id,
                number: e.order.number.clone(),
                customer: e.order.user_id,
                units: lang.number(e.units),
                total: lang.money(e.order.total_cents, &e.order.currency),
                deadline: lang.datetime(e.deadline),
                deadline_iso: format_rfc3339(e.deadline),
                deadline_ms: e.deadline,
                left: lang.span(e.deadline - now),
                overdue: e.deadline <= now,
            })
            .collect(),
    ))
}

fn formats(lang: Lang) -> (String, String) {
    let t = lang.texts();
    let sep = if lang == Lang::En { " " } else { "" };
    (
        format!("{{h}}{sep}{}{sep}{{m}}{sep}{}", t.unit_h, t.unit_min),
        format!("{{m}}{sep}{}{sep}{{s}}{sep}{}", t.unit_min, t.unit_s),
    )
}

pub async fn page(console: Console) -> PageResult {
    let (server_now, rows) = load(&console).await?;
    let (format_hours, format_minutes) = formats(console.lang.lang);
    Ok(render(&Page {
        c: console.chrome(Nav::Expiring),
        t: console.t(),
        server_now,
        rows,
        format_hours,
        format_minutes,
    }))
}

pub async fn rows(console: Console) -> PageResult {
    let (server_now, rows) = load(&console).await?;
    Ok(render(&Rows {
        t: console.t(),
        server_now,
        rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_formats_match_the_server_spans() {
        let (h, m) = formats(Lang::En);
        assert_eq!(
            h.replace("{h}", "1").replace("{m}", "02"),
            Lang::En.span(3_725_000)
        );
        assert_eq!(
            m.replace("{m}", "12").replace("{s}", "30"),
            Lang::En.span(750_000)
        );
        let (_, m) = formats(Lang::Zh);
        assert_eq!(
            m.replace("{m}", "12").replace("{s}", "30"),
            Lang::Zh.span(750_000)
        );
    }
}
