//! The dashboard: what needs attention now (unpaid orders, those expiring within 15
//! minutes, late payments to refund, products out of stock) and four charts.

use super::charts::{self, Bar, Svg};
use super::i18n::fill;
use super::session::Console;
use super::{Chrome, Nav, PageResult, render};
use crate::reports::Dashboard;
use askama::Template;

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    c: Chrome,
    unpaid: String,
    expiring_soon: String,
    to_refund: String,
    out_of_stock: String,
    charts: Vec<(String, Svg)>,
}

pub async fn page(console: Console) -> PageResult {
    let board = console
        .ordo
        .dashboard(console.actor(), console.lang.tz)
        .await
        .map_err(|e| console.fail(e))?;
    let lang = console.lang;
    let page = DashboardPage {
        c: console.chrome(Nav::Dashboard),
        unpaid: lang.number(board.unpaid),
        expiring_soon: lang.number(board.expiring_soon),
        to_refund: lang.number(board.to_refund),
        out_of_stock: lang.number(board.out_of_stock),
        charts: draw(&console, &board),
    };
    Ok(render(&page))
}

fn draw(console: &Console, board: &Dashboard) -> Vec<(String, Svg)> {
    let lang = console.lang;
    let t = console.t();
    let summary = |values: &mut dyn Iterator<Item = i64>, show: &dyn Fn(i64) -> String| {
        let (total, max) = values.fold((0, 0), |(s, m), v| (s + v, m.max(v)));
        (
            fill(
                t.chart_total,
                &[("total", &show(total)), ("max", &show(max))],
            ),
            show(max),
        )
    };
    let number = |n: i64| lang.number(n);
    let currency = board.currency.clone().unwrap_or_else(|| "EUR".to_owned());
    let money = |n: i64| lang.money(n, &currency);
    let last = board.days.len().saturating_sub(1);

    let days: Vec<Bar> = board
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| Bar {
            label: lang.short_day(d.start),
            value: d.placed,
            shown: lang.number(d.placed),
            labelled: (last - i).is_multiple_of(7),
        })
        .collect();
    let (orders_summary, orders_max) = summary(&mut board.days.iter().map(|d| d.placed), &number);

    let revenue: Vec<Bar> = board
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| Bar {
            label: lang.short_day(d.start),
            value: d.paid_cents,
            shown: money(d.paid_cents),
            labelled: (last - i).is_multiple_of(7),
        })
        .collect();
    let (revenue_summary, revenue_max) =
        summary(&mut board.days.iter().map(|d| d.paid_cents), &money);

    let hours: Vec<Bar> = board
        .sweep_hours
        .iter()
        .enumerate()
        .map(|(i, (start, n))| Bar {
            label: lang.hour(*start),
            value: *n,
            shown: lang.number(*n),
            labelled: (board.sweep_hours.len() - 1 - i).is_multiple_of(8),
        })
        .collect();
    let (sweep_summary, sweep_max) =
        summary(&mut board.sweep_hours.iter().map(|(_, n)| *n), &number);

    let bands = [
        t.age_under_5m,
        t.age_5_15m,
        t.age_15_30m,
        t.age_30_60m,
        t.age_1_6h,
        t.age_over_6h,
    ];
    let backlog: Vec<Bar> = bands
        .iter()
        .zip(board.backlog)
        .map(|(label, n)| Bar {
            label: (*label).to_owned(),
            value: n,
            shown: lang.number(n),
            labelled: true,
        })
        .collect();
    let (backlog_summary, backlog_max) = summary(&mut board.backlog.into_iter(), &number);

    let revenue_title = fill(t.chart_revenue_per_day, &[("currency", &currency)]);
    vec![
        (
            t.chart_orders_per_day.to_owned(),
            charts::bars(
                "orders-per-day",
                t.chart_orders_per_day,
                &orders_summary,
                &days,
                &orders_max,
            ),
        ),
        (
            revenue_title.clone(),
            charts::bars(
                "revenue-per-day",
                &revenue_title,
                &revenue_summary,
                &revenue,
                &revenue_max,
            ),
        ),
        (
            t.chart_sweep_per_hour.to_owned(),
            charts::bars(
                "sweep-per-hour",
                t.chart_sweep_per_hour,
                &sweep_summary,
                &hours,
                &sweep_max,
            ),
        ),
        (
            t.chart_backlog.to_owned(),
            charts::bars(
                "backlog-by-age",
                t.chart_backlog,
                &backlog_summary,
                &backlog,
                &backlog_max,
            ),
        ),
    ]
}
