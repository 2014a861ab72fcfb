//! API tokens: random, shown once, stored only as a SHA-256 hash; they may expire and can
//! be revoked. Every request looks its token up afresh, so a revoked token is refused at
//! once (no cache can serve it).

use crate::Ordo;
use crate::audit::{self, Object};
use crate::db;
use crate::domain::{Actor, Millis, User, UserRole, time::serde_rfc3339};
use crate::error::{Error, Result};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;

/// The one role check for what only staff may do (an operator at the command line counts
/// as staff); everyone else is forbidden.
pub(crate) fn require_staff(actor: Actor) -> Result<()> {
    if actor.is_staff() {
        Ok(())
    } else {
        Err(Error::Forbidden {
            reason: "only staff may do this".to_owned(),
        })
    }
}

/// Staff, an operator, or the one system actor `also`.
pub(crate) fn require_staff_or(actor: Actor, also: Actor) -> Result<()> {
    if actor == also {
        Ok(())
    } else {
        require_staff(actor)
    }
}

/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY_MS: Millis = 60_000;
/// Uses are written in one statement per this interval, not one per request.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The token lookups of concurrent requests, read together: one query per batch instead
/// of one per request. Each request's lookup is read by a query that starts after the
/// request arrived, so nothing is cached and a revoked token is refused at once.
#[derive(Debug, Default)]
pub(crate) struct TokenLookups {
    queue: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Lookup>>,
}

type Lookup = (
    String,
    tokio::sync::oneshot::Sender<Result<Option<db::users::TokenRow>>>,
);

/// Most lookups read by one query.
const MAX_LOOKUPS: usize = 256;

impl TokenLookups {
    async fn look_up(&self, db: &db::Db, hash: String) -> Result<Option<db::users::TokenRow>> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(run_lookups(db.clone(), rx));
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let stopped = || Error::Unavailable("token lookups have stopped".to_owned());
        queue.send((hash, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Reads what is queued, up to [`MAX_LOOKUPS`] at a time, and answers each; ends when
/// every sender is gone.
async fn run_lookups(db: db::Db, mut queue: tokio::sync::mpsc::UnboundedReceiver<Lookup>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_LOOKUPS {
            match queue.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        let hashes: Vec<&str> = batch.iter().map(|(h, _)| h.as_str()).collect();
        let found = async {
            let mut conn = db.pool().acquire().await?;
            db::users::by_token_hashes(
                &mut conn,
                db.dialect(),
                &serde_json::to_string(&hashes).unwrap_or_default(),
            )
            .await
        }
        .await;
        match found {
            Ok(rows) => {
                let rows: std::collections::HashMap<String, db::users::TokenRow> =
                    rows.into_iter().collect();
                for (hash, reply) in batch {
                    // The same token may come twice in a batch: each gets its row.
                    let _ = reply.send(Ok(rows.get(&hash).cloned()));
                }
            }
            Err(err) => {
                let message = err.to_string();
                for (_, reply) in batch {
                    let _ = reply.send(Err(Error::Unavailable(message.clone())));
                }
            }
        }
    }
}

/// Token uses seen by this process and not yet written: token id → when.
#[derive(Debug, Default)]
pub(crate) struct TokenUses {
    pending: std::sync::Mutex<std::collections::HashMap<i64, Millis>>,
    flusher: std::sync::OnceLock<()>,
}

/// A bearer token in clear. Redacted in `Debug` so it never lands in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    fn generate() -> ApiToken {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        ApiToken(format!("ordo_{}", hex::encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// What is stored: the hex SHA-256 of the token. Tokens are 256 random bits, so a fast
/// hash is enough; nothing in the database gives the token back.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a new token is for: a new user with `name` and `role`, or another token of an
/// existing user (`user_id`).
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub name: String,
    pub role: Option<UserRole>,
    pub user_id: Option<i64>,
    /// How long it lives; `None`: until revoked.
    pub expires_in: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

/// A token as listed: everything but the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub user_id: i64,
    pub user_name: String,
    #[schema(value_type = String, example = "staff")]
    pub role: UserRole,
    pub state: TokenState,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Millis>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Millis>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Millis>,
}

impl TokenInfo {
    fn from_row(row: db::users::TokenRow, now: Millis) -> TokenInfo {
        let state = if row.revoked_at.is_some() {
            TokenState::Revoked
        } else if row.expires_at.is_some_and(|at| at <= now) {
            TokenState::Expired
        } else {
            TokenState::Active
        };
        TokenInfo {
            id: row.id,
            name: row.name,
            user_id: row.user.id,
            user_name: row.user.name,
            role: row.user.role,
            state,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// Who a request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: User,
    pub token_id: i64,
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::validation("name", "1 to 200 printable characters"));
    }
    Ok(name.to_owned())
}

/// The longest lifetime a token can be given: ten years (the console offers the same).
pub const MAX_TOKEN_LIFETIME_MS: Millis = 3650 * 86_400_000;

impl Ordo {
    /// Creates a user with a token that never expires, as the operator; the token is
    /// returned once and never stored.
    pub async fn create_user_with_token(
        &self,
        name: &str,
        role: UserRole,
    ) -> Result<(User, ApiToken)> {
        let (info, token) = self
            .issue_token(
                Actor::Operator,
                &NewToken {
                    name: name.to_owned(),
                    role: Some(role),
                    ..NewToken::default()
                },
            )
            .await?;
        Ok((
            User {
                id: info.user_id,
                name: info.user_name,
                role: info.role,
            },
            token,
        ))
    }

    /// Issues a token (staff or operator): for a new user, or another one for an existing
    /// user. The token is returned once; only its hash is kept.
    pub async fn issue_token(&self, actor: Actor, new: &NewToken) -> Result<(TokenInfo, ApiToken)> {
        require_staff(actor)?;
        let name = check_name(&new.name)?;
        if let Some(span) = new.expires_in
            && !(1..=MAX_TOKEN_LIFETIME_MS).contains(&span)
        {
            return Err(Error::validation(
                "expires_in",
                "a token lives at most 3650 days (10 years); omit it for a token that lives until revoked",
            ));
        }
        let now = self.clock.now();
        let expires_at = new.expires_in.map(|span| now + span);
        let token = ApiToken::generate();
        let mut tx = self.db.write_tx().await?;
        let user = match (new.user_id, new.role) {
            (Some(id), None) => db::users::get(&mut tx, id)
                .await?
                .ok_or_else(|| Error::validation("user_id", format!("user {id} does not exist")))?,
            (None, Some(role)) => db::users::insert(&mut tx, &name, role, now).await?,
            (Some(_), Some(_)) => {
                return Err(Error::validation(
                    "role",
                    "give either user_id (another token for that user) or role (a new user), not both",
                ));
            }
            (None, None) => {
                return Err(Error::validation(
                    "role",
                    "required for a new user (customer or staff), unless user_id names an existing one",
                ));
            }
        };
        let id = db::users::insert_token(
            &mut tx,
            &db::users::NewTokenRow {
                user_id: user.id,
                name: &name,
                token_hash: &token_hash(token.expose()),
                expires_at,
                now,
            },
        )
        .await?;
        audit::record(
            &mut tx,
            actor,
            "token.create",
            Object::Token(id),
            serde_json::json!({"name": name, "user_id": user.id, "role": user.role.as_str(),
                "expires_at": expires_at.map(crate::domain::format_rfc3339)}),
            now,
        )
        .await?;
        let info = TokenInfo::from_row(
            db::users::token(&mut tx, id)
                .await?
                .ok_or(Error::NotFound { what: "token" })?,
            now,
        );
        tx.commit().await?;
        Ok((info, token))
    }

    /// The user a bearer token belongs to. Unknown, revoked and expired tokens are
    /// `Unauthorized`, each with its own reason. Records the use at most once a minute.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated> {
        let unknown = || Error::Unauthorized {
            reason: "unknown token".to_owned(),
        };
        if token.is_empty() || token.len() > 200 {
            return Err(unknown());
        }
        let row = self
            .token_lookups
            .look_up(&self.db, token_hash(token))
            .await?
            .ok_or_else(unknown)?;
        let now = self.clock.now();
        if let Some(at) = row.revoked_at {
            return Err(Error::Unauthorized {
                reason: format!(
                    "this token was revoked at {}",
                    crate::domain::format_rfc3339(at)
                ),
            });
        }
        if let Some(at) = row.expires_at.filter(|at| *at <= now) {
            return Err(Error::Unauthorized {
                reason: format!(
                    "this token expired at {}",
                    crate::domain::format_rfc3339(at)
                ),
            });
        }
        if row.last_used_at.is_none_or(|at| at <= now - TOUCH_EVERY_MS) {
            self.note_token_use(row.id, now);
        }
        Ok(Authenticated {
            user: row.user,
            token_id: row.id,
        })
    }

    /// Notes a use to write with the next flush, starting the flusher on first use.
    fn note_token_use(&self, token_id: i64, now: Millis) {
        let uses = &self.token_uses;
        uses.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(token_id)
            .or_insert(now);
        uses.flusher.get_or_init(|| {
            let weak = std::sync::Arc::downgrade(&self.token_uses);
            let db = self.db.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(FLUSH_EVERY).await;
                    let Some(uses) = weak.upgrade() else { return };
                    if let Err(err) = flush(&db, &uses).await {
                        tracing::warn!(error = %err, "could not record token uses");
                    }
                }
            });
        });
    }

    /// Writes the token uses noted so far (also done every few seconds in the background).
    pub async fn flush_token_uses(&self) -> Result<()> {
        flush(&self.db, &self.token_uses).await
    }

    /// Every token, in id order after `after_id` (staff).
    pub async fn tokens(&self, actor: Actor, after_id: i64, limit: i64) -> Result<Vec<TokenInfo>> {
        require_staff(actor)?;
        let now = self.clock.now();
        let mut conn = self.db.pool().acquire().await?;
        Ok(db::users::list_tokens(&mut conn, after_id, limit)
            .await?
            .into_iter()
            .map(|row| TokenInfo::from_row(row, now))
            .collect())
    }

    /// Revokes a token (staff or operator): refused from the next request on.
    pub async fn revoke_token(&self, actor: Actor, id: i64) -> Result<TokenInfo> {
        require_staff(actor)?;
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        if db::users::token(&mut tx, id).await?.is_none() {
            return Err(Error::NotFound { what: "token" });
        }
        if !db::users::revoke_token(&mut tx, id, now).await? {
            return Err(Error::Conflict(format!("token {id} is already revoked")));
        }
        audit::record(
            &mut tx,
            actor,
            "token.revoke",
            Object::Token(id),
            serde_json::json!({}),
            now,
        )
        .await?;
        let info = TokenInfo::from_row(
            db::users::token(&mut tx, id)
                .await?
                .ok_or(Error::NotFound { what: "token" })?,
            now,
        );
        tx.commit().await?;
        Ok(info)
    }
}

/// One statement for every use noted since the last flush; each token's `last_used_at`
/// moves at most once a minute whichever process writes it.
async fn flush(db: &db::Db, uses: &TokenUses) -> Result<()> {
    let batch: Vec<(i64, Millis)> = uses
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    let mut conn = db.pool().acquire().await?;
    db::users::touch_tokens(&mut conn, db.dialect(), &batch, TOUCH_EVERY_MS).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_redacted() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "ApiToken(<redacted>)");
        assert_eq!(token_hash(a.expose()).len(), 64);
        assert_ne!(token_hash(a.expose()), a.expose());
    }
}
