//! Host names of webhook endpoints, resolved in Rust (hickory) from `/etc/hosts` and
//! `/etc/resolv.conf` rather than by the C library: a statically linked ordo (the
//! container image) has no name-service modules to load.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::net::IpAddr;
use std::sync::OnceLock;

/// The process's resolver, made on first use: the system's configuration, or, without a
/// usable `/etc/resolv.conf`, the hosts file alone (never some public DNS server).
fn resolver() -> Result<&'static TokioResolver, String> {
    static RESOLVER: OnceLock<Result<TokioResolver, String>> = OnceLock::new();
    RESOLVER
        .get_or_init(|| {
            // IPv4 first, IPv6 only for a name without an IPv4 address: a name the hosts
            // file gives an IPv4 address is answered from it, without asking DNS for AAAA.
            let mut builder = TokioResolver::builder_tokio().unwrap_or_else(|err| {
                tracing::warn!(error = %err, "no usable /etc/resolv.conf: webhook hosts resolve from /etc/hosts only");
                TokioResolver::builder_with_config(
                    ResolverConfig::default(),
                    TokioRuntimeProvider::default(),
                )
            });
            builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
            builder.build().map_err(|e| format!("cannot make a DNS resolver: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The addresses `host` (a name, or an address written out) stands for.
pub async fn lookup(host: &str) -> std::io::Result<Vec<IpAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let resolver = resolver().map_err(std::io::Error::other)?;
    let found = resolver
        .lookup_ip(bare)
        .await
        .map_err(|e| std::io::Error::other(format!("{bare}: {e}")))?;
    Ok(found.iter().collect())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn names_from_the_hosts_file_and_written_addresses() {
        assert_eq!(
            super::lookup("[::1]").await.unwrap(),
            ["::1".parse::<std::net::IpAddr>().unwrap()]
        );
        let localhost = super::lookup("localhost").await.unwrap();
        assert!(localhost.iter().all(|ip| ip.is_loopback()) && !localhost.is_empty());
    }
}
