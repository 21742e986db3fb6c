//! The client's address: the TCP peer, or — only when the peer is a configured trusted
//! proxy — the nearest untrusted address in `X-Forwarded-For`.

use actix_web::HttpRequest;
use ipnet::IpNet;
use std::net::IpAddr;

/// `trusted_proxies` holds addresses (as /32 or /128) and CIDR ranges.
pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip().to_canonical();
    if !is_trusted(peer, trusted_proxies) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    Some(nearest_untrusted(peer, &forwarded, trusted_proxies))
}

/// An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4 peer) is
/// matched as the IPv4 address it is.
fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// Walks the chain from the right (closest hop) and stops at the first address that is
/// not one of our proxies: anything further left was written by the client itself.
fn nearest_untrusted(peer: IpAddr, chain: &[IpAddr], trusted: &[IpNet]) -> IpAddr {
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(**ip, trusted))
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| match s.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => IpNet::from(ip(s)),
            })
            .collect()
    }

    #[test]
    fn spoofed_left_entries_are_ignored() {
        let trusted = nets(&["10.0.0.1"]);
        let chain = [ip("6.6.6.6"), ip("1.2.3.4")];
        assert_eq!(
            nearest_untrusted(ip("10.0.0.1"), &chain, &trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn chains_of_trusted_proxies_are_skipped() {
        let trusted = nets(&["10.0.0.1", "10.0.0.2"]);
        let chain = [ip("1.2.3.4"), ip("10.0.0.2")];
        assert_eq!(
            nearest_untrusted(ip("10.0.0.1"), &chain, &trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn the_walk_skips_every_hop_inside_a_trusted_range() {
        let trusted = nets(&["10.0.0.0/8", "192.168.7.0/24"]);
        // client 1.2.3.4 → 192.168.7.9 → 10.1.2.3 → peer 10.200.0.1
        let chain = [
            ip("6.6.6.6"),
            ip("1.2.3.4"),
            ip("192.168.7.9"),
            ip("10.1.2.3"),
        ];
        assert_eq!(
            nearest_untrusted(ip("10.200.0.1"), &chain, &trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn the_walk_stops_at_the_first_address_outside_every_range() {
        let trusted = nets(&["10.0.0.0/8"]);
        // 192.168.7.9 is not ours: it, not what it claims, is the client.
        let chain = [ip("1.2.3.4"), ip("192.168.7.9"), ip("10.1.2.3")];
        assert_eq!(
            nearest_untrusted(ip("10.0.0.1"), &chain, &trusted),
            ip("192.168.7.9")
        );
        // Just outside the range's edge is outside.
        let chain = [ip("11.0.0.0")];
        assert_eq!(
            nearest_untrusted(ip("10.0.0.1"), &chain, &trusted),
            ip("11.0.0.0")
        );
    }

    #[test]
    fn a_chain_of_only_trusted_hops_leaves_the_peer() {
        let trusted = nets(&["10.0.0.0/8"]);
        let chain = [ip("10.9.9.9"), ip("10.1.2.3")];
        assert_eq!(
            nearest_untrusted(ip("10.0.0.1"), &chain, &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv6_ranges_are_walked_too() {
        let trusted = nets(&["fd00::/8"]);
        let chain = [ip("2001:db8::1"), ip("fd12::7")];
        assert_eq!(
            nearest_untrusted(ip("fd00::1"), &chain, &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn a_peer_inside_a_range_is_believed_and_one_outside_is_not() {
        let trusted = nets(&["10.0.0.0/8"]);
        let behind = actix_web::test::TestRequest::default()
            .peer_addr("10.3.4.5:1000".parse().unwrap())
            .insert_header(("x-forwarded-for", "6.6.6.6, 1.1.1.1, 10.7.7.7"))
            .to_http_request();
        assert_eq!(client_ip(&behind, &trusted), Some(ip("1.1.1.1")));
        let direct = actix_web::test::TestRequest::default()
            .peer_addr("11.0.0.1:1000".parse().unwrap())
            .insert_header(("x-forwarded-for", "1.1.1.1"))
            .to_http_request();
        assert_eq!(client_ip(&direct, &trusted), Some(ip("11.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let trusted = nets(&["10.0.0.0/8"]);
        let req = actix_web::test::TestRequest::default()
            .peer_addr("[::ffff:10.0.0.1]:1000".parse().unwrap())
            .insert_header(("x-forwarded-for", "::ffff:1.2.3.4"))
            .to_http_request();
        assert_eq!(client_ip(&req, &trusted), Some(ip("1.2.3.4")));
    }

    #[test]
    fn untrusted_peer_is_taken_as_is() {
        let req = actix_web::test::TestRequest::default()
            .peer_addr("9.9.9.9:1000".parse().unwrap())
            .insert_header(("x-forwarded-for", "1.1.1.1"))
            .to_http_request();
        assert_eq!(client_ip(&req, &nets(&["10.0.0.1"])), Some(ip("9.9.9.9")));
    }
}
