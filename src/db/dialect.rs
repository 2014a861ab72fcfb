//! Everything that differs between SQLite and PostgreSQL, in one place.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The file a SQLite URL names (`sqlite://ordo.db`, `sqlite:///srv/ordo/ordo.db`,
/// `sqlite:ordo.db?mode=rwc`).
pub fn sqlite_path(url: &str) -> std::path::PathBuf {
    let url = url.trim();
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    std::path::PathBuf::from(path)
}

impl Dialect {
    /// Picks the dialect from a database URL and normalizes the URL: a SQLite file is
    /// created when missing, and a bare path means a SQLite file.
    pub fn from_url(url: &str) -> Result<(Dialect, String)> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok((Dialect::Postgres, url.to_owned()));
        }
        if url.contains(',') {
            return Err(Error::Config(format!(
                "database URL {url:?}: a host list (commas) is only for postgres:// URLs; SQLite takes one file"
            )));
        }
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else if url.contains("://") || url.is_empty() {
            return Err(Error::Config(format!(
                "unsupported database URL {url:?}: use sqlite://PATH (or a plain file path) or postgres://USER@HOST/DB"
            )));
        } else {
            format!("sqlite://{url}")
        };
        let url = if url.contains("mode=") {
            url
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        Ok((Dialect::Sqlite, url))
    }

    /// The clause that locks the selected rows until the transaction ends. SQLite has no
    /// row locks (and rejects the syntax); its writers are serialized by `BEGIN IMMEDIATE`.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Like [`Dialect::for_update`], but rows another transaction holds are passed over, so
    /// concurrent sweeps claim disjoint batches.
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// A condition: `column` is one of the integers of the JSON array bound as text to
    /// parameter `$n`. Lets one statement work on a batch of ids without building SQL from
    /// values. On PostgreSQL the array becomes `= ANY(bigint[])`, which the planner turns into
    /// one index probe per id whatever its statistics say (a JSON function's row estimate can
    /// make it scan a whole index instead).
    pub fn in_ids(self, column: &str, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
            Dialect::Postgres => {
                format!("{column} = ANY(translate(${n}, '[]', '{{}}')::bigint[])")
            }
        }
    }

    /// Like [`Dialect::in_ids`], for a JSON array of strings.
    pub fn in_texts(self, column: &str, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
            Dialect::Postgres => {
                format!("{column} = ANY(ARRAY(SELECT json_array_elements_text(${n}::json)))")
            }
        }
    }

    /// Like [`Dialect::for_update`], in the weaker mode that still lets other transactions
    /// insert rows referencing the locked one (their foreign-key checks take KEY SHARE): for
    /// rows whose keys do not change, such as a product whose stock does.
    pub fn for_no_key_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR NO KEY UPDATE",
        }
    }

    /// A FROM item with one row per object of the JSON array bound as text to `$n`, named
    /// `r`, with the given (column, SQL type) pairs: how one statement inserts or updates a
    /// whole batch without building SQL from values.
    pub fn json_rows(self, n: u8, columns: &[(&str, &str)]) -> String {
        match self {
            Dialect::Postgres => format!(
                "json_to_recordset(${n}::json) AS r({})",
                columns
                    .iter()
                    .map(|(name, ty)| format!("{name} {ty}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Dialect::Sqlite => format!(
                "(SELECT {} FROM json_each(${n})) AS r",
                columns
                    .iter()
                    .map(|(name, _)| format!("json_extract(value, '$.{name}') AS {name}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Dialect::from_url("ordo.db").unwrap(),
            (Dialect::Sqlite, "sqlite://ordo.db?mode=rwc".to_owned())
        );
        assert_eq!(
            Dialect::from_url("sqlite:///tmp/x.db?mode=ro").unwrap(),
            (Dialect::Sqlite, "sqlite:///tmp/x.db?mode=ro".to_owned())
        );
        assert_eq!(
            Dialect::from_url("postgres://u@h/db").unwrap().0,
            Dialect::Postgres
        );
        assert!(Dialect::from_url("mysql://u@h/db").is_err());
        assert_eq!(
            Dialect::Postgres.json_rows(1, &[("id", "bigint"), ("key", "text")]),
            "json_to_recordset($1::json) AS r(id bigint, key text)"
        );
        assert_eq!(
            Dialect::Sqlite.json_rows(2, &[("id", "bigint")]),
            "(SELECT json_extract(value, '$.id') AS id FROM json_each($2)) AS r"
        );
        assert!(Dialect::from_url("").is_err());
        for (url, path) in [
            ("sqlite://ordo.db?mode=rwc", "ordo.db"),
            ("sqlite:///srv/ordo/ordo.db", "/srv/ordo/ordo.db"),
            ("sqlite:data/ordo.db", "data/ordo.db"),
        ] {
            assert_eq!(sqlite_path(url), std::path::PathBuf::from(path), "{url}");
        }
    }
}
