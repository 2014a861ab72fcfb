//! Console sessions: a staff API token, pasted once at sign-in, becomes a random session id
//! in an `HttpOnly; SameSite=Strict; Path=/console` cookie (`Secure` when the request came
//! over HTTPS through a proxy that says so with `X-Forwarded-Proto: https`). Only the
//! SHA-256 of the id is stored, with the user and the token; a session ends after 12 idle
//! hours, at sign-out, or as soon as its token is revoked or expires. Sign-in and sign-out
//! are in the audit log.

use super::i18n::{Lang, Locale, Texts};
use super::{PageResult, lang_of, render, render_with};
use crate::Ordo;
use crate::audit::{self, Object};
use crate::auth::token_hash;
use crate::db;
use crate::domain::{Actor, Millis, User, UserRole};
use crate::error::Result;
use crate::http::AppState;
use crate::http::rate_limit::Client;
use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use std::net::SocketAddr;

/// A session ends after this long without a request.
pub const IDLE_MS: Millis = 12 * 3_600_000;
/// `last_seen_at` is written at most this often.
const TOUCH_EVERY_MS: Millis = 60_000;
const COOKIE: &str = "ordo_session";

/// A signed-in staff member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub user: User,
    pub token_id: i64,
}

/// Why a token cannot open a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Revoked,
    Expired,
    NotStaff,
}

/// The short, stable name of a session in the audit log (its hash's prefix).
fn audit_name(id_hash: &str) -> &str {
    &id_hash[..16.min(id_hash.len())]
}

impl Ordo {
    /// Opens a console session for a staff token: returns the session id to put in the
    /// cookie (the only place it is ever in clear) and the session.
    pub async fn open_console_session(
        &self,
        token: &str,
    ) -> Result<std::result::Result<(String, Session), Refusal>> {
        let token = token.trim();
        if token.is_empty() || token.len() > 200 {
            return Ok(Err(Refusal::Unknown));
        }
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let hashes = serde_json::json!([token_hash(token)]).to_string();
        let found = db::users::by_token_hashes(&mut tx, self.db.dialect(), &hashes).await?;
        let Some((_, row)) = found.into_iter().next() else {
            return Ok(Err(Refusal::Unknown));
        };
        if row.revoked_at.is_some() {
            return Ok(Err(Refusal::Revoked));
        }
        if row.expires_at.is_some_and(|at| at <= now) {
            return Ok(Err(Refusal::Expired));
        }
        if row.user.role != UserRole::Staff {
            return Ok(Err(Refusal::NotStaff));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let id_hash = token_hash(&id);
        db::sessions::delete_idle(&mut tx, now - IDLE_MS).await?;
        db::sessions::insert(&mut tx, &id_hash, row.user.id, row.id, now).await?;
        audit::record(
            &mut tx,
            row.user.actor(),
            "session.sign_in",
            Object::Session(audit_name(&id_hash)),
            serde_json::json!({"token_id": row.id}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Ok((
            id,
            Session {
                id_hash,
                user: row.user,
                token_id: row.id,
            },
        )))
    }

    /// The session with this id, if it is open: not idle for 12 hours, its token neither
    /// revoked nor expired, its user staff. Records activity at most once a minute.
    pub async fn console_session(&self, id: &str) -> Result<Option<Session>> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let now = self.clock.now();
        let id_hash = token_hash(id);
        let mut conn = self.db.pool().acquire().await?;
        let Some(row) = db::sessions::get(&mut conn, &id_hash).await? else {
            return Ok(None);
        };
        let open = row.last_seen_at > now - IDLE_MS
            && row.token_revoked_at.is_none()
            && row.token_expires_at.is_none_or(|at| at > now)
            && row.user.role == UserRole::Staff;
        if !open {
            return Ok(None);
        }
        if row.last_seen_at <= now - TOUCH_EVERY_MS
            && let Err(err) = db::sessions::touch(&mut conn, &id_hash, now, TOUCH_EVERY_MS).await
        {
            tracing::warn!(error = %err, "could not record console session activity");
        }
        Ok(Some(Session {
            id_hash,
            user: row.user,
            token_id: row.token_id,
        }))
    }

    /// Ends a session (sign-out).
    pub async fn close_console_session(&self, session: &Session) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        if db::sessions::delete(&mut tx, &session.id_hash).await? {
            audit::record(
                &mut tx,
                session.user.actor(),
                "session.sign_out",
                Object::Session(audit_name(&session.id_hash)),
                serde_json::json!({"token_id": session.token_id}),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Did the request reach us over HTTPS (a TLS-terminating proxy in front says so)?
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A console cookie: `HttpOnly; SameSite=Strict; Path=/console`, `Secure` over HTTPS, and
/// `Max-Age` when given (else it lasts the browser session).
pub fn console_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: Option<u32>,
) -> Option<HeaderValue> {
    let secure = if is_https(headers) { "; Secure" } else { "" };
    let max_age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict{secure}{max_age}"
    ))
    .ok()
}

/// A request of a signed-in staff member, within their rate limit: what every page
/// handler takes. Strangers are sent to sign in.
pub struct Console {
    pub ordo: Ordo,
    pub state: AppState,
    pub session: Session,
    /// The viewer's language, the shop's time zone and currency.
    pub lang: Locale,
    /// The path and query of this request.
    pub path: String,
}

impl Console {
    pub fn actor(&self) -> Actor {
        self.session.user.actor()
    }

    pub fn t(&self) -> &'static Texts {
        self.lang.texts()
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let lang = lang_of(&parts.headers);
        let found = match super::cookie(&parts.headers, COOKIE) {
            Some(id) => state.ordo.console_session(&id).await,
            None => Ok(None),
        };
        let session = match found {
            Ok(Some(session)) => session,
            Ok(None) => return Err(to_sign_in(&parts.headers)),
            Err(err) => {
                return Err(super::error_page(
                    lang,
                    super::error_status(&err),
                    &super::error_text(lang, &err),
                ));
            }
        };
        if let Err(seconds) = state.limiter.check(Client::Token(session.token_id)) {
            let mut response = super::error_page(
                lang,
                StatusCode::TOO_MANY_REQUESTS,
                &super::i18n::fill(
                    lang.texts().err_rate_limited,
                    &[("seconds", &seconds.to_string())],
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Err(response);
        }
        Ok(Console {
            ordo: state.ordo.clone(),
            state: state.clone(),
            session,
            lang: Locale::new(lang, state.time_zone, state.currency.as_deref()),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/console/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// Where a stranger goes: the sign-in page (for htmx's background requests, a header
/// that makes the whole page go there instead of pasting the form into a table).
fn to_sign_in(headers: &HeaderMap) -> Response {
    if headers.contains_key("hx-request") {
        return (
            StatusCode::OK,
            [("hx-redirect", "/console/login")],
            String::new(),
        )
            .into_response();
    }
    Redirect::to("/console/login").into_response()
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    t: &'static Texts,
    lang: &'static str,
    other_lang: &'static str,
    other_lang_name: &'static str,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

impl LoginPage {
    fn new(lang: Lang) -> LoginPage {
        LoginPage {
            t: lang.texts(),
            lang: lang.code(),
            other_lang: lang.other().code(),
            other_lang_name: lang.other().own_name(),
            notice: None,
            error: None,
        }
    }
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    signed_out: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<LoginQuery>,
) -> Response {
    // Someone already signed in goes straight to the dashboard.
    if let Some(id) = super::cookie(&headers, COOKIE)
        && let Ok(Some(_)) = state.ordo.console_session(&id).await
    {
        return Redirect::to("/console/").into_response();
    }
    let lang = lang_of(&headers);
    let mut page = LoginPage::new(lang);
    if query.signed_out.is_some() {
        page.notice = Some(lang.texts().signed_out);
    }
    render(&page)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    axum::Form(form): axum::Form<LoginForm>,
) -> PageResult {
    let lang = lang_of(&headers);
    // Guessing tokens is limited per address like any request without a valid token.
    let address = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| {
            c.0.ip()
        });
    if let Err(seconds) = state.limiter.check(Client::Address(address)) {
        return Ok(super::error_page(
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            &super::i18n::fill(
                lang.texts().err_rate_limited,
                &[("seconds", &seconds.to_string())],
            ),
        ));
    }
    let opened = state
        .ordo
        .open_console_session(&form.token)
        .await
        .map_err(|error| super::PageError { lang, error })?;
    match opened {
        Ok((id, _)) => {
            let mut response = Redirect::to("/console/").into_response();
            if let Some(cookie) = console_cookie(&headers, COOKIE, &id, None) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            Ok(response)
        }
        Err(refusal) => {
            let t = lang.texts();
            let mut page = LoginPage::new(lang);
            page.error = Some(match refusal {
                Refusal::Unknown => t.refused_unknown,
                Refusal::Revoked => t.refused_revoked,
                Refusal::Expired => t.refused_expired,
                Refusal::NotStaff => t.refused_customer,
            });
            Ok(render_with(StatusCode::UNAUTHORIZED, &page))
        }
    }
}

pub async fn logout(console: Console, headers: HeaderMap) -> PageResult {
    console
        .ordo
        .close_console_session(&console.session)
        .await
        .map_err(|e| console.fail(e))?;
    let mut response = Redirect::to("/console/login?signed_out=1").into_response();
    if let Some(cookie) = console_cookie(&headers, COOKIE, "", Some(0)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
