//! Several PostgreSQL hosts in one URL, libpq style (`postgres://u@h1:5432,h2:5433/db`),
//! and finding the one that takes writes: sqlx takes one host per URL and ignores
//! `target_session_attrs`, so ordo parses the list itself, connects only to a server that
//! is not in recovery, and finds the new primary after a failover.

use crate::error::{Error, Result};

/// One host of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A PostgreSQL URL taken apart: the hosts in order and what the rest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    scheme: String,
    userinfo: String,
    pub hosts: Vec<Host>,
    path: String,
    /// The query without `target_session_attrs`.
    query: Vec<(String, String)>,
    /// Connect only to a server that takes writes (`target_session_attrs=read-write`, the
    /// default for several hosts).
    pub read_write: bool,
}

fn bad(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "database URL {}: {why}",
        crate::config::redact_url(url)
    ))
}

impl PgTarget {
    /// Parses `postgres://[user[:password]@]host[:port][,host[:port]…][/db][?params]`.
    pub fn parse(url: &str) -> Result<PgTarget> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| *s == "postgres" || *s == "postgresql")
            .ok_or_else(|| bad(url, "must start with postgres://"))?;
        let (authority_and_path, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match authority_and_path.find('/') {
            Some(i) => (&authority_and_path[..i], &authority_and_path[i..]),
            None => (authority_and_path, ""),
        };
        let (userinfo, hostlist) = match authority.rfind('@') {
            Some(i) => (&authority[..=i], &authority[i + 1..]),
            None => ("", authority),
        };
        let mut hosts = Vec::new();
        for (i, part) in hostlist.split(',').enumerate() {
            hosts.push(parse_host(part).map_err(|why| bad(url, format!("host {}: {why}", i + 1)))?);
        }
        let mut read_write = hosts.len() > 1;
        let mut kept = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "target_session_attrs" {
                read_write = match value {
                    "read-write" | "primary" => true,
                    "any" => false,
                    other => {
                        return Err(bad(
                            url,
                            format!(
                                "target_session_attrs={other} is not supported; use read-write or any"
                            ),
                        ));
                    }
                };
            } else {
                kept.push((key.to_owned(), value.to_owned()));
            }
        }
        Ok(PgTarget {
            scheme: scheme.to_owned(),
            userinfo: userinfo.to_owned(),
            hosts,
            path: path.to_owned(),
            query: kept,
            read_write,
        })
    }

    /// The database name the URL gives (else `PGDATABASE`, else the user's name, as the
    /// driver does).
    pub fn database(&self) -> String {
        let name = self.path.trim_start_matches('/');
        if !name.is_empty() {
            return name.to_owned();
        }
        std::env::var("PGDATABASE").unwrap_or_else(|_| self.user())
    }

    /// The user the URL gives (else `PGUSER`, else the login name, as the driver does).
    pub fn user(&self) -> String {
        let user = self.userinfo.trim_end_matches('@');
        let user = user.split_once(':').map_or(user, |(u, _)| u);
        if !user.is_empty() {
            return user.to_owned();
        }
        std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "postgres".to_owned())
    }

    /// A single-host URL for host `i`, as sqlx takes it.
    pub fn url_for(&self, i: usize) -> String {
        let host = &self.hosts[i];
        let mut url = format!("{}://{}{}{}", self.scheme, self.userinfo, host, self.path);
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(
                &self
                    .query
                    .iter()
                    .map(|(k, v)| {
                        if v.is_empty() {
                            k.clone()
                        } else {
                            format!("{k}={v}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("&"),
            );
        }
        url
    }
}

fn parse_host(part: &str) -> std::result::Result<Host, String> {
    if part.is_empty() {
        return Err("is empty".to_owned());
    }
    let (host, port) = if let Some(rest) = part.strip_prefix('[') {
        let end = rest.find(']').ok_or("has an unclosed [")?;
        let host = &rest[..end];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("needs a : before its port")?),
            ),
        }
    } else {
        match part.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (part, None),
        }
    };
    if host.is_empty() {
        return Err("has no name".to_owned());
    }
    let port = match port {
        None => 5432,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {p:?} is not a port (1 to 65535)"))?,
    };
    Ok(Host {
        host: host.to_owned(),
        port,
    })
}

/// What probing a host found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Takes writes.
    Primary,
    /// In recovery (a standby) or read-only.
    Standby,
    Unreachable(String),
    /// The server answered and refused us (no such database, authentication failed):
    /// waiting will not change that.
    Rejected(String),
}

/// Why no host is the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoPrimary {
    /// Each host and what it said.
    pub why: String,
    /// Every host refused us for good (no such database, bad credentials).
    pub rejected: bool,
}

/// The first host that is a primary, trying them in order; or why none is.
pub async fn choose<F, Fut>(hosts: &[Host], mut probe: F) -> std::result::Result<usize, NoPrimary>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Probe>,
{
    let mut why = Vec::new();
    let mut rejected = true;
    for (i, host) in hosts.iter().enumerate() {
        match probe(i).await {
            Probe::Primary => return Ok(i),
            Probe::Standby => why.push(format!("{host} is a standby")),
            Probe::Unreachable(e) => why.push(format!("{host}: {e}")),
            Probe::Rejected(e) => {
                why.push(format!("{host}: {e}"));
                continue;
            }
        }
        rejected = false;
    }
    Err(NoPrimary {
        why: format!("no primary among the database hosts ({})", why.join("; ")),
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists() {
        let t = PgTarget::parse(
            "postgres://u:pw@h1:5432,h2:5433/ordo?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            t.hosts,
            [
                Host {
                    host: "h1".into(),
                    port: 5432
                },
                Host {
                    host: "h2".into(),
                    port: 5433
                }
            ]
        );
        assert!(t.read_write);
        assert_eq!(t.url_for(1), "postgres://u:pw@h2:5433/ordo?sslmode=disable");
        // Several hosts mean read-write unless told otherwise; one host means any.
        assert!(PgTarget::parse("postgres://h1,h2/ordo").unwrap().read_write);
        assert!(!PgTarget::parse("postgres://h1/ordo").unwrap().read_write);
        assert!(
            !PgTarget::parse("postgres://h1,h2/ordo?target_session_attrs=any")
                .unwrap()
                .read_write
        );
        let t = PgTarget::parse("postgresql://[::1]:6000,[fe80::2],db3/ordo").unwrap();
        assert_eq!(
            t.hosts[0],
            Host {
                host: "::1".into(),
                port: 6000
            }
        );
        assert_eq!(t.hosts[1].port, 5432);
        assert_eq!(t.url_for(0), "postgresql://[::1]:6000/ordo");
        assert_eq!(t.url_for(2), "postgresql://db3:5432/ordo");
        let t = PgTarget::parse("postgres://shop:secret@db/orders").unwrap();
        assert_eq!((t.user(), t.database()), ("shop".into(), "orders".into()));
    }

    #[test]
    fn bad_lists_are_named() {
        for (url, says) in [
            ("postgres://h1,,h2/ordo", "host 2: is empty"),
            ("postgres://h1,h2:99999/ordo", "host 2: port \"99999\""),
            ("postgres://h1:abc/ordo", "host 1: port \"abc\""),
            ("postgres://h1:0/ordo", "host 1: port \"0\""),
            ("postgres://:5432/ordo", "host 1: has no name"),
            ("postgres://[::1/ordo", "unclosed"),
            (
                "postgres://h1,h2/ordo?target_session_attrs=standby",
                "not supported",
            ),
        ] {
            let err = PgTarget::parse(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
        let err = PgTarget::parse("postgres://u:secret@h1,/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    fn hosts(n: usize) -> Vec<Host> {
        (0..n)
            .map(|i| Host {
                host: format!("h{i}"),
                port: 5432,
            })
            .collect()
    }

    #[tokio::test]
    async fn the_first_primary_is_chosen() {
        let found = [
            Probe::Unreachable("refused".into()),
            Probe::Standby,
            Probe::Primary,
            Probe::Primary,
        ];
        let chosen = choose(&hosts(4), |i| {
            let p = found[i].clone();
            async move { p }
        })
        .await;
        assert_eq!(chosen, Ok(2));
    }

    #[tokio::test]
    async fn no_primary_says_why() {
        let found = [
            Probe::Standby,
            Probe::Unreachable("connection refused".into()),
        ];
        let chosen = choose(&hosts(2), |i| {
            let p = found[i].clone();
            async move { p }
        })
        .await;
        let no = chosen.unwrap_err();
        assert!(no.why.contains("h0:5432 is a standby"), "{no:?}");
        assert!(no.why.contains("h1:5432: connection refused"), "{no:?}");
        assert!(!no.rejected, "a standby may be promoted: worth waiting for");
    }

    #[tokio::test]
    async fn hosts_that_all_refuse_us_are_not_waited_for() {
        let chosen = choose(&hosts(2), |_| async {
            Probe::Rejected("no such database".into())
        })
        .await;
        assert!(chosen.unwrap_err().rejected);
    }
}
