//! The audit log: every staff action, newest first, with filters and cursor paging.

use super::session::Console;
use super::{Chrome, Nav, PageResult, filled, next_page, render};
use crate::audit::AuditFilter;
use askama::Template;
use axum::extract::Query;

const PAGE: i64 = 50;

struct Row {
    at: String,
    actor: String,
    action: String,
    object: String,
    detail: String,
    request: String,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Filters {
    actor: Option<String>,
    action: Option<String>,
    object_type: Option<String>,
    object_id: Option<String>,
    request_id: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Page {
    c: Chrome,
    f: Filters,
    rows: Vec<Row>,
    next: Option<String>,
}

pub async fn page(console: Console, Query(f): Query<Filters>) -> PageResult {
    let lang = console.lang;
    let text = |v: &Option<String>| filled(v).map(str::to_owned);
    let filter = AuditFilter {
        actor: text(&f.actor),
        action: text(&f.action),
        object_type: text(&f.object_type),
        object_id: text(&f.object_id),
        request_id: text(&f.request_id),
        since: None,
        until: None,
        before_id: f.before,
        limit: PAGE,
    };
    let entries = console
        .ordo
        .audit_log(console.actor(), &filter)
        .await
        .map_err(|e| console.fail(e))?;
    let next = next_page(&entries, PAGE, |e| {
        let mut q = format!("/console/audit?before={}", e.id);
        for (k, v) in [
            ("actor", &f.actor),
            ("action", &f.action),
            ("object_type", &f.object_type),
            ("object_id", &f.object_id),
            ("request_id", &f.request_id),
        ] {
            if let Some(v) = filled(v) {
                q.push_str(&format!("&{k}={}", super::query_value(v)));
            }
        }
        q
    });
    let rows = entries
        .into_iter()
        .map(|e| Row {
            at: lang.datetime(e.created_at),
            actor: e.actor,
            action: e.action,
            object: format!("{} {}", e.object_type, e.object_id.unwrap_or_default()),
            detail: e.detail.to_string(),
            request: e.request_id.unwrap_or_default(),
        })
        .collect();
    Ok(render(&Page {
        c: console.chrome(Nav::Audit),
        f,
        rows,
        next,
    }))
}
