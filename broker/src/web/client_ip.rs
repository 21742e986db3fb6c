//! The client's address: the TCP peer, or — only when the peer is a configured trusted
//! proxy — the nearest untrusted address in `X-Forwarded-For`.

use actix_web::HttpRequest;
use std::net::IpAddr;

pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(nearest_untrusted(peer, &forwarded, trusted_proxies))
}

/// Walks the chain from the right (closest hop) and stops at the first address that is
/// not one of our proxies: anything further left was written by the client itself.
fn nearest_untrusted(peer: IpAddr, chain: &[IpAddr], trusted: &[IpAddr]) -> IpAddr {
    chain
        .iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn spoofed_left_entries_are_ignored() {
        let trusted = [ip("10.0.0.1")];
        let chain = [ip("6.6.6.6"), ip("1.2.3.4")];
        assert_eq!(
            nearest_untrusted(ip("10.0.0.1"), &chain, &trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn chains_of_trusted_proxies_are_skipped() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let chain = [ip("1.2.3.4"), ip("10.0.0.2")];
        assert_eq!(
            nearest_untrusted(ip("10.0.0.1"), &chain, &trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn untrusted_peer_is_taken_as_is() {
        let req = actix_web::test::TestRequest::default()
            .peer_addr("9.9.9.9:1000".parse().unwrap())
            .insert_header(("x-forwarded-for", "1.1.1.1"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("9.9.9.9")));
    }
}
