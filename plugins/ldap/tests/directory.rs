//! Logins and refreshes against a real slapd: search-then-bind and direct bind, groups,
//! the required group, special characters, filter injection, and changes made to the
//! directory between login and refresh.

mod support;

use serde_json::json;
use support::*;
use switchboard_plugin_api::ProviderError;

#[tokio::test]
async fn a_user_logs_in_with_groups_and_attributes() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let p = provider(search_config(&slapd));
        let id = login(&p, "ada", ADA.password).await.unwrap();
        assert_eq!(id.provider_id, "corp");
        assert_eq!(id.username.as_deref(), Some("ada"));
        assert_eq!(id.email.as_deref(), Some("ada@example.org"));
        assert!(id.email_verified);
        assert_eq!(id.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(id.groups, names(ADA.groups));
        // The subject is the entryUUID, never the login.
        assert_eq!(id.subject.len(), 36, "{}", id.subject);
        assert_ne!(id.subject, "ada");
        assert_eq!(id.claims["dn"], json!(user_dn("ada")));
        assert_eq!(
            id.provider_data.as_ref().unwrap()["dn"],
            json!(user_dn("ada"))
        );

        // Logging in by email finds the same entry; the subject does not change.
        let again = login(&p, "ada@example.org", ADA.password).await.unwrap();
        assert_eq!(again.subject, id.subject);
        assert_eq!(again.username.as_deref(), Some("ada"));
    })
    .await;
}

#[tokio::test]
async fn email_is_unverified_unless_the_operator_says_so() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let mut config = search_config(&slapd);
        config.as_object_mut().unwrap().remove("email_verified");
        let id = login(&provider(config), "bob", BOB.password).await.unwrap();
        assert_eq!(id.email.as_deref(), Some("bob@example.org"));
        assert!(!id.email_verified);
    })
    .await;
}

#[tokio::test]
async fn wrong_password_unknown_user_and_outsider_get_the_same_error() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let p = provider(search_config(&slapd));
        assert_eq!(
            login(&p, "ada", "not-her-password").await,
            Err(ProviderError::InvalidCredentials)
        );
        assert_eq!(
            login(&p, "nobody", "whatever").await,
            Err(ProviderError::InvalidCredentials)
        );
        // Eve has the right password but is not in allowed_to_login.
        assert_eq!(
            login(&p, "eve", EVE.password).await,
            Err(ProviderError::InvalidCredentials)
        );
        // Without a required group she may log in, which shows her password was right.
        let mut config = search_config(&slapd);
        config.as_object_mut().unwrap().remove("required_group");
        let id = login(&provider(config), "eve", EVE.password).await.unwrap();
        assert_eq!(id.groups, names(&["engineering"]));
    })
    .await;
}

#[tokio::test]
async fn an_empty_password_is_refused_although_the_server_would_accept_it() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        // The test server allows unauthenticated binds (DN + empty password), as many
        // servers do; the provider must refuse before binding.
        let mut admin = slapd.admin().await;
        let anonymous = admin.0.simple_bind(&user_dn("ada"), "").await.unwrap();
        assert_eq!(
            anonymous.rc, 0,
            "the server should accept unauthenticated binds"
        );

        let p = provider(search_config(&slapd));
        assert_eq!(
            login(&p, "ada", "").await,
            Err(ProviderError::InvalidCredentials)
        );
        let direct = provider(json!({
            "url": slapd.url(),
            "user_dn_template": format!("uid={{username}},{PEOPLE}"),
        }));
        assert_eq!(
            login(&direct, "ada", "").await,
            Err(ProviderError::InvalidCredentials)
        );
    })
    .await;
}

#[tokio::test]
async fn filter_injection_attempts_are_invalid_credentials() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let p = provider(search_config(&slapd));
        for attack in [
            "*",
            "*)(uid=*",
            "admin)(|(uid=*",
            "admin)(|(uid=*))",
            "ad*",
            "*)(|(objectClass=*",
            "admin\\",
            "admin\0",
        ] {
            for pw in [ADMIN.password, ADA.password, "x"] {
                assert_eq!(
                    login(&p, attack, pw).await,
                    Err(ProviderError::InvalidCredentials),
                    "{attack:?}"
                );
            }
        }
        // The admin still logs in normally.
        assert!(login(&p, "admin", ADMIN.password).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn users_with_special_characters_log_in() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let p = provider(search_config(&slapd));
        let star = login(&p, STAR.uid, STAR.password).await.unwrap();
        assert_eq!(star.username.as_deref(), Some(STAR.uid));
        assert_eq!(star.groups, names(STAR.groups));
        // The wildcard in the stored uid is data: it matches nothing else.
        assert_eq!(
            login(&p, "st*", STAR.password).await,
            Err(ProviderError::InvalidCredentials)
        );

        let jurgen = login(&p, "jürgen", JURGEN.password).await.unwrap();
        assert_eq!(jurgen.name.as_deref(), Some("Jürgen Groß"));
        assert_eq!(jurgen.groups, names(JURGEN.groups));

        let smith = login(&p, SMITH.uid, SMITH.password).await.unwrap();
        assert_eq!(smith.username.as_deref(), Some(SMITH.uid));
        assert_eq!(smith.groups, names(SMITH.groups));
    })
    .await;
}

#[tokio::test]
async fn a_search_matching_two_entries_is_an_error_not_the_first_one() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let p = provider(search_config(&slapd));
        // carol and dave share this address; with carol's password "take the first"
        // would let her in (or dave, depending on order).
        for pw in [CAROL.password, DAVE.password] {
            match login(&p, "shared@example.org", pw).await {
                Err(ProviderError::UpstreamProtocol { detail }) => {
                    assert!(detail.contains("more than one"), "{detail}")
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
        assert!(login(&p, "carol", CAROL.password).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn group_prefix_decides_which_groups_travel() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let mut config = search_config(&slapd);
        config["group_prefix"] = json!("api_perm_");
        let p = provider(config);
        let id = login(&p, "ada", ADA.password).await.unwrap();
        assert_eq!(id.groups, names(&["API_PERM_read", "API_PERM_write"]));
        // The required group is checked on all groups, before the prefix filter.
        let id = login(&p, "admin", ADMIN.password).await.unwrap();
        assert_eq!(id.groups, names(&["API_PERM_admin"]));
    })
    .await;
}

#[tokio::test]
async fn refresh_sees_removed_groups_and_deleted_users() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let p = provider(search_config(&slapd));
        let ada = login(&p, "ada", ADA.password).await.unwrap();
        let bob = login(&p, "bob", BOB.password).await.unwrap();
        let star = login(&p, STAR.uid, STAR.password).await.unwrap();

        // Nothing changed: refresh returns the same identity.
        assert_eq!(refresh(&p, ada.clone()).await.unwrap(), ada);

        let mut admin = slapd.admin().await;
        admin.remove_member("API_PERM_write", "ada").await;
        admin.set("ada", "mail", "lovelace@example.org").await;
        let ada2 = refresh(&p, ada.clone()).await.unwrap();
        assert_eq!(ada2.subject, ada.subject);
        assert_eq!(
            ada2.groups,
            names(&["API_PERM_read", "allowed_to_login", "engineering"])
        );
        assert_eq!(ada2.email.as_deref(), Some("lovelace@example.org"));

        // Out of the login group: denied at refresh.
        admin.remove_member("allowed_to_login", "bob").await;
        assert!(matches!(
            refresh(&p, bob).await,
            Err(ProviderError::Denied { .. })
        ));

        // Deleted: denied at refresh.
        admin.delete_user("ada").await;
        match refresh(&p, ada2).await {
            Err(ProviderError::Denied { reason }) => {
                assert!(reason.contains("no longer exists"), "{reason}")
            }
            other => panic!("expected Denied, got {other:?}"),
        }
        assert_eq!(
            login(&p, "ada", ADA.password).await,
            Err(ProviderError::InvalidCredentials)
        );

        // Special characters survive the round trip through provider_data.
        assert_eq!(refresh(&p, star.clone()).await.unwrap(), star);
    })
    .await;
}

#[tokio::test]
async fn direct_bind_escapes_the_dn_and_offers_no_refresh_without_a_service_account() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let p = provider(json!({
            "url": slapd.url(),
            "operation_timeout": 2,
            "user_dn_template": format!("uid={{username}},{PEOPLE}"),
            "group_search": { "base_dn": GROUPS },
            "required_group": "allowed_to_login",
        }));
        assert!(p.refresh().is_none());
        assert!(!p.capabilities().refresh);

        // Groups are read with the person's own connection.
        let ada = login(&p, "ada", ADA.password).await.unwrap();
        assert_eq!(ada.groups, names(ADA.groups));
        assert_eq!(ada.subject.len(), 36);

        let smith = login(&p, SMITH.uid, SMITH.password).await.unwrap();
        assert_eq!(smith.name.as_deref(), Some("John Smith"));
        let star = login(&p, STAR.uid, STAR.password).await.unwrap();
        assert_eq!(star.name.as_deref(), Some("Star Paren"));

        for (user, pw) in [
            ("ada", "wrong"),
            ("nobody", "x"),
            ("eve", EVE.password),
            // DN injection: these would name other entries if pasted unescaped.
            ("ada,ou=people", ADA.password),
            ("admin,ou=people,dc=example,dc=org", ADMIN.password),
            ("x,cn=admin,dc=example,dc=org", ROOT_PW),
            ("*", ADA.password),
        ] {
            assert_eq!(
                login(&p, user, pw).await,
                Err(ProviderError::InvalidCredentials),
                "{user:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn direct_bind_with_a_service_account_refreshes() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let p = provider(json!({
            "url": slapd.url(),
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PW,
            "user_dn_template": format!("uid={{username}},{PEOPLE}"),
            "group_search": { "base_dn": GROUPS },
        }));
        let smith = login(&p, SMITH.uid, SMITH.password).await.unwrap();
        assert_eq!(refresh(&p, smith.clone()).await.unwrap(), smith);
        slapd.admin().await.delete_user(SMITH.uid).await;
        assert!(matches!(
            refresh(&p, smith).await,
            Err(ProviderError::Denied { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn active_directory_guid_subject_and_disabled_bit() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let mut config = search_config(&slapd);
        config["id_attribute"] = json!("objectGUID");
        let p = provider(config);
        let grace = login(&p, "grace", GRACE.password).await.unwrap();
        assert_eq!(grace.subject, "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(refresh(&p, grace.clone()).await.unwrap(), grace);

        // ACCOUNTDISABLE (0x2) set: refresh is denied, and so is a new login even if
        // the server still accepts the bind.
        slapd
            .admin()
            .await
            .set("grace", "userAccountControl", "514")
            .await;
        match refresh(&p, grace).await {
            Err(ProviderError::Denied { reason }) => assert_eq!(reason, "account disabled"),
            other => panic!("expected Denied, got {other:?}"),
        }
        assert_eq!(
            login(&p, "grace", GRACE.password).await,
            Err(ProviderError::InvalidCredentials)
        );
        // Users without objectGUID cannot log in with this mapping: a clear error.
        assert!(matches!(
            login(&p, "ada", ADA.password).await,
            Err(ProviderError::UpstreamProtocol { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn a_wrong_service_password_is_a_configuration_error() {
    let Some(slapd) = Slapd::start() else { return };
    bounded(async {
        let mut config = search_config(&slapd);
        config["bind_password"] = json!("not-the-service-password");
        let p = provider(config);
        assert!(matches!(
            login(&p, "ada", ADA.password).await,
            Err(ProviderError::Misconfigured { .. })
        ));
    })
    .await;
}
