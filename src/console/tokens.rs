//! API tokens: the list, a new token (shown once), revocation, through the same calls as
//! the API. A revoked token also ends every console session opened with it.

use super::i18n::{Texts, fill};
use super::session::Console;
use super::{Chrome, Nav, PageResult, error_status, filled, next_page, render_with, whole_number};
use crate::auth::{NewToken, TokenState};
use crate::domain::UserRole;
use crate::error::Error;
use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};

const PAGE: i64 = 100;

struct Row {
    id: i64,
    name: String,
    user: String,
    role: &'static str,
    state: &'static str,
    active: bool,
    created: String,
    last_used: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
struct Page {
    c: Chrome,
    rows: Vec<Row>,
    next: Option<i64>,
    token: Option<String>,
}

fn state_label(t: &'static Texts, state: TokenState) -> &'static str {
    match state {
        TokenState::Active => t.token_active,
        TokenState::Expired => t.token_expired,
        TokenState::Revoked => t.token_revoked,
    }
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    after: Option<i64>,
    revoked: Option<i64>,
}

pub async fn page(console: Console, Query(query): Query<ListQuery>) -> PageResult {
    let notice = query
        .revoked
        .map(|id| fill(console.t().revoked_notice, &[("id", &id.to_string())]));
    show(&console, query.after, notice, None, None).await
}

async fn show(
    console: &Console,
    after: Option<i64>,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
    token: Option<String>,
) -> PageResult {
    let t = console.t();
    let lang = console.lang;
    let tokens = console
        .ordo
        .tokens(console.actor(), after.unwrap_or(0), PAGE)
        .await
        .map_err(|e| console.fail(e))?;
    let next = next_page(&tokens, PAGE, |t| t.id);
    let mut c = console.chrome(Nav::Tokens);
    c.notice = notice;
    let status = c.refused(error);
    let page = Page {
        c,
        rows: tokens
            .into_iter()
            .map(|k| Row {
                id: k.id,
                name: k.name,
                user: format!("{} (#{})", k.user_name, k.user_id),
                role: match k.role {
                    UserRole::Staff => t.role_staff,
                    UserRole::Customer => t.role_customer,
                },
                state: state_label(t, k.state),
                active: k.state == TokenState::Active,
                created: lang.datetime(k.created_at),
                last_used: k
                    .last_used_at
                    .map_or_else(|| t.never.to_owned(), |at| lang.datetime(at)),
                expires: k
                    .expires_at
                    .map_or_else(|| t.never.to_owned(), |at| lang.datetime(at)),
            })
            .collect(),
        next,
        token,
    };
    Ok(render_with(status, &page))
}

#[derive(serde::Deserialize)]
pub struct CreateForm {
    name: Option<String>,
    role: Option<String>,
    expires_days: Option<String>,
}

pub async fn create(console: Console, axum::Form(form): axum::Form<CreateForm>) -> PageResult {
    let new = (|| {
        let role = match filled(&form.role) {
            Some("staff") => UserRole::Staff,
            Some("customer") => UserRole::Customer,
            _ => return Err(Error::validation("role", "staff or customer")),
        };
        let expires_in = match whole_number("expires_days", &form.expires_days)? {
            None => None,
            Some(days) if (1..=crate::auth::MAX_TOKEN_LIFETIME_MS / 86_400_000).contains(&days) => {
                Some(days * 86_400_000)
            }
            Some(_) => return Err(Error::validation("expires_days", "1 to 3650 days")),
        };
        Ok(NewToken {
            name: filled(&form.name).unwrap_or("").to_owned(),
            role: Some(role),
            user_id: None,
            expires_in,
        })
    })();
    let issued = match new {
        Ok(new) => console.ordo.issue_token(console.actor(), &new).await,
        Err(err) => Err(err),
    };
    match issued {
        Ok((_, token)) => show(&console, None, None, None, Some(token.expose().to_owned())).await,
        Err(err) => {
            let error = (error_status(&err), console.error_text(&err));
            show(&console, None, None, Some(error), None).await
        }
    }
}

pub async fn revoke(console: Console, Path(id): Path<i64>) -> PageResult {
    match console.ordo.revoke_token(console.actor(), id).await {
        Ok(_) if id == console.session.token_id => {
            // Revoking one's own token ends this session too.
            Ok(Redirect::to("/console/login").into_response())
        }
        Ok(_) => Ok(Redirect::to(&format!("/console/tokens?revoked={id}")).into_response()),
        Err(err) => {
            let error = (error_status(&err), console.error_text(&err));
            show(&console, None, None, Some(error), None).await
        }
    }
}
