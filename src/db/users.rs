//! Users and their API tokens (stored as SHA-256 hashes only).

use super::Conn;
use crate::domain::{Millis, User, UserRole};
use crate::error::{Error, Result};
use sqlx::Row;

pub async fn insert(conn: &mut Conn, name: &str, role: UserRole, now: Millis) -> Result<User> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (name, role, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(User {
        id,
        name: name.to_owned(),
        role,
    })
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<User>> {
    let row = sqlx::query("SELECT id, name, role FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| user_from(&row)).transpose()
}

fn user_from(row: &sqlx::any::AnyRow) -> Result<User> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: UserRole::parse(&role)
            .ok_or_else(|| Error::Conflict(format!("user has unknown role {role:?}")))?,
    })
}

pub struct NewTokenRow<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub expires_at: Option<Millis>,
    pub now: Millis,
}

pub async fn insert_token(conn: &mut Conn, row: &NewTokenRow<'_>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_hash, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(row.user_id)
    .bind(row.name)
    .bind(row.token_hash)
    .bind(row.expires_at)
    .bind(row.now)
    .fetch_one(&mut *conn)
    .await?)
}

/// A token as stored (never the token itself), with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub user: User,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

const TOKEN_COLUMNS: &str = "t.id AS token_id, COALESCE(t.name, u.name) AS token_name, \
     t.created_at, t.expires_at, t.revoked_at, t.last_used_at, u.id, u.name, u.role";

fn token_from(row: &sqlx::any::AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: row.try_get("token_id")?,
        name: row.try_get("token_name")?,
        user: user_from(row)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

/// The tokens with these hashes (a JSON array), each with its hash: one query for the
/// lookups of many concurrent requests.
pub async fn by_token_hashes(
    conn: &mut Conn,
    dialect: super::Dialect,
    hashes_json: &str,
) -> Result<Vec<(String, TokenRow)>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS}, t.token_hash FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE {}",
        dialect.in_texts("t.token_hash", 1)
    )))
    .bind(hashes_json)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get::<String, _>("token_hash")?, token_from(row)?)))
        .collect()
}

pub async fn token(conn: &mut Conn, id: i64) -> Result<Option<TokenRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| token_from(&row)).transpose()
}

/// Tokens in id order after `after_id`.
pub async fn list_tokens(conn: &mut Conn, after_id: i64, limit: i64) -> Result<Vec<TokenRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.id > $1 ORDER BY t.id LIMIT $2"
    )))
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(token_from).collect()
}

/// Revokes a token; `false` if it was already revoked.
pub async fn revoke_token(conn: &mut Conn, id: i64, now: Millis) -> Result<bool> {
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Records uses of tokens (id, when), each at most once per `every_ms` whoever else
/// records it.
pub async fn touch_tokens(
    conn: &mut Conn,
    dialect: super::Dialect,
    uses: &[(i64, Millis)],
    every_ms: i64,
) -> Result<()> {
    let rows: Vec<serde_json::Value> = uses
        .iter()
        .map(|(id, at)| serde_json::json!({"id": id, "at": at}))
        .collect();
    let rows_json = serde_json::to_string(&rows).unwrap_or_default();
    let rows = dialect.json_rows(1, &[("id", "bigint"), ("at", "bigint")]);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE api_tokens SET last_used_at = r.at FROM {rows}
         WHERE api_tokens.id = r.id
           AND (api_tokens.last_used_at IS NULL OR api_tokens.last_used_at <= r.at - $2)"
    )))
    .bind(rows_json)
    .bind(every_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The customer's stored WeChat openid, if any.
pub async fn wechat_openid(conn: &mut Conn, id: i64) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT wechat_openid FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten(),
    )
}
