//! Transport: ldaps:// and StartTLS with a test CA, failing closed on an untrusted
//! certificate or a refused StartTLS; a server that goes away and comes back; a server
//! that accepts connections but never answers.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::*;
use switchboard_plugin_api::ProviderError;

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, ProviderError>) {
    match result {
        Err(ProviderError::UpstreamUnavailable { .. }) => {}
        other => panic!("expected UpstreamUnavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn ldaps_with_the_test_ca() {
    let Some(slapd) = Slapd::start_tls() else {
        return;
    };
    bounded(async {
        let mut config = search_config(&slapd);
        config["url"] = json!(slapd.ldaps_url());
        config["ca_file"] = json!(slapd.pki().ca);
        let p = provider(config);
        let id = login(&p, "ada", ADA.password).await.unwrap();
        assert_eq!(id.groups, names(ADA.groups));
        assert_eq!(refresh(&p, id.clone()).await.unwrap(), id);
    })
    .await;
}

#[tokio::test]
async fn start_tls_with_the_test_ca() {
    let Some(slapd) = Slapd::start_tls() else {
        return;
    };
    bounded(async {
        let mut config = search_config(&slapd);
        config["start_tls"] = json!(true);
        config["ca_file"] = json!(slapd.pki().ca);
        let p = provider(config);
        let id = login(&p, "jürgen", JURGEN.password).await.unwrap();
        assert_eq!(id.groups, names(JURGEN.groups));

        // Direct bind over StartTLS too.
        let direct = provider(json!({
            "url": slapd.url(),
            "start_tls": true,
            "ca_file": slapd.pki().ca,
            "user_dn_template": format!("uid={{username}},{PEOPLE}"),
        }));
        assert!(login(&direct, "ada", ADA.password).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn an_untrusted_certificate_fails_closed() {
    let Some(slapd) = Slapd::start_tls() else {
        return;
    };
    bounded(async {
        let mut start_tls = search_config(&slapd);
        start_tls["start_tls"] = json!(true);
        start_tls["ca_file"] = json!(slapd.pki().other_ca);
        let p = provider(start_tls);
        assert_unavailable(login(&p, "ada", ADA.password).await);

        let mut ldaps = search_config(&slapd);
        ldaps["url"] = json!(slapd.ldaps_url());
        ldaps["ca_file"] = json!(slapd.pki().other_ca);
        assert_unavailable(login(&provider(ldaps), "ada", ADA.password).await);

        // Direct bind: the person's password must not be sent either.
        let direct = provider(json!({
            "url": slapd.url(),
            "start_tls": true,
            "ca_file": slapd.pki().other_ca,
            "user_dn_template": format!("uid={{username}},{PEOPLE}"),
        }));
        assert_unavailable(login(&direct, "ada", ADA.password).await);
    })
    .await;
}

#[tokio::test]
async fn a_server_name_the_certificate_does_not_cover_fails_closed() {
    let Some(slapd) = Slapd::start_tls() else {
        return;
    };
    bounded(async {
        // The certificate covers 127.0.0.1 and localhost, not 127.0.0.2 (which is
        // still loopback and reaches the server on Linux).
        let mut config = search_config(&slapd);
        config["url"] = json!(format!("ldaps://127.0.0.2:{}", slapd.tls_port.unwrap()));
        config["ca_file"] = json!(slapd.pki().ca);
        assert_unavailable(login(&provider(config), "ada", ADA.password).await);
    })
    .await;
}

#[tokio::test]
async fn start_tls_refused_by_the_server_fails_closed() {
    // A server without TLS configured answers StartTLS with an error.
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let mut config = search_config(&slapd);
        config["start_tls"] = json!(true);
        config["insecure_skip_verify"] = json!(true);
        assert_unavailable(login(&provider(config), "ada", ADA.password).await);
    })
    .await;
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_unknown_certificate() {
    let Some(slapd) = Slapd::start_tls() else {
        return;
    };
    bounded(async {
        let mut config = search_config(&slapd);
        config["url"] = json!(slapd.ldaps_url());
        config["insecure_skip_verify"] = json!(true);
        assert!(login(&provider(config), "ada", ADA.password).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_and_the_provider_recovers_after_restart() {
    let Some(mut slapd) = Slapd::start() else {
        return;
    };
    bounded(async {
        let p = provider(search_config(&slapd));
        let ada = login(&p, "ada", ADA.password).await.unwrap();

        slapd.stop();
        let started = Instant::now();
        assert_unavailable(login(&p, "ada", ADA.password).await);
        assert_unavailable(refresh(&p, ada.clone()).await);
        assert!(started.elapsed() < Duration::from_secs(5));

        // Same port, same data: the dead service connection is replaced.
        slapd.restart();
        let again = login(&p, "ada", ADA.password).await.unwrap();
        assert_eq!(again.subject, ada.subject);
        assert_eq!(refresh(&p, ada.clone()).await.unwrap(), ada);

        // A restart while the service connection looks alive: the first operation
        // finds it broken and reconnects once, transparently.
        slapd.restart();
        assert_eq!(refresh(&p, ada.clone()).await.unwrap(), ada);
    })
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_without_holding_up_others() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let (port, silent) = silent_server().await;
        let timeout = Duration::from_millis(700);
        let config = |url: String, start_tls: bool| {
            let mut c = search_config(&slapd);
            c["url"] = json!(url);
            c["connect_timeout"] = json!("700ms");
            c["operation_timeout"] = json!("700ms");
            if start_tls {
                c["start_tls"] = json!(true);
                c["insecure_skip_verify"] = json!(true);
            }
            c
        };
        let plain = provider(config(format!("ldap://127.0.0.1:{port}"), false));
        let ldaps = {
            let mut c = config(format!("ldaps://127.0.0.1:{port}"), false);
            c["insecure_skip_verify"] = json!(true);
            provider(c)
        };
        let start_tls = provider(config(format!("ldap://127.0.0.1:{port}"), true));
        let healthy = provider(search_config(&slapd));
        let direct = provider(json!({
            "url": format!("ldap://127.0.0.1:{port}"),
            "operation_timeout": "700ms",
            "user_dn_template": format!("uid={{username}},{PEOPLE}"),
        }));

        let started = Instant::now();
        let slow = async {
            let r = tokio::join!(
                login(&plain, "ada", ADA.password),
                login(&ldaps, "ada", ADA.password),
                login(&start_tls, "ada", ADA.password),
                login(&direct, "ada", ADA.password),
            );
            (r, started.elapsed())
        };
        let fast = async {
            let r = login(&healthy, "ada", ADA.password).await;
            (r, started.elapsed())
        };
        let (((a, b, c, d), slow_elapsed), (ok, fast_elapsed)) = tokio::join!(slow, fast);
        assert_unavailable(a);
        assert_unavailable(b);
        assert_unavailable(c);
        assert_unavailable(d);
        assert!(
            slow_elapsed >= timeout && slow_elapsed < timeout * 3,
            "took {slow_elapsed:?}"
        );
        // Another provider kept working while these waited.
        assert!(ok.is_ok());
        assert!(
            fast_elapsed < timeout,
            "healthy login took {fast_elapsed:?}"
        );

        // Several logins at once each fail within their own timeout (no queueing
        // behind one stuck connection attempt).
        let started = Instant::now();
        let results = logins_at_once(&plain, 5, "ada", ADA.password).await;
        for r in results {
            assert_unavailable(r);
        }
        assert!(
            started.elapsed() < timeout * 3,
            "took {:?}",
            started.elapsed()
        );
        silent.abort();
    })
    .await;
}

#[tokio::test]
async fn a_closed_port_is_unavailable_at_once() {
    let p = provider(json!({
        "url": format!("ldap://127.0.0.1:{}", free_port()),
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PW,
        "user_search": { "base_dn": PEOPLE, "filter": "(uid={username})" },
    }));
    let started = Instant::now();
    assert_unavailable(login(&p, "ada", "pw").await);
    assert!(started.elapsed() < Duration::from_secs(2));
}
