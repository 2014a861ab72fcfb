//! API tokens: random, shown once, stored only as a SHA-256 hash.

use crate::Ordo;
use crate::db;
use crate::domain::{User, UserRole};
use crate::error::{Error, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

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

impl Ordo {
    /// Creates a user and a token for them; the token is returned once and never stored.
    pub async fn create_user_with_token(
        &self,
        name: &str,
        role: UserRole,
    ) -> Result<(User, ApiToken)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Error::validation("name", "1 to 200 printable characters"));
        }
        let now = self.clock.now();
        let token = ApiToken::generate();
        let mut tx = self.db.write_tx().await?;
        let user = db::users::insert(&mut tx, name, role, now).await?;
        db::users::insert_token(&mut tx, user.id, &token_hash(token.expose()), now).await?;
        tx.commit().await?;
        Ok((user, token))
    }

    /// The user a bearer token belongs to, if any.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>> {
        if token.is_empty() || token.len() > 200 {
            return Ok(None);
        }
        let mut conn = self.db.pool().acquire().await?;
        db::users::by_token_hash(&mut conn, &token_hash(token)).await
    }
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
