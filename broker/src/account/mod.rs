//! The account page (`/account`): the identities linked to the signed-in user, linking
//! another provider and unlinking one, and the person's API keys. Linking starts an
//! ordinary login whose purpose is [`Purpose::Link`]; the login pages finish it by
//! linking the identity to this session's user instead of starting a session. A new
//! API key's secret is in the answer to the form that made it, once: never in a URL,
//! a cookie or the store. The password and email forms are in `credentials`.

mod credentials;

mod mfa;

use crate::flow::{AccountIntent, PendingLogin, Purpose};
use crate::identity::api_keys::{self, KeyRequestError, NewApiKey};
use crate::identity::{self, IdentityError};
use crate::secrets::SecretString;
use crate::store::{ApiKeyRecord, SessionRecord, UnixTime};
use crate::web::{AppState, PageError, Text, browser, see_other};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

const ACCOUNT_PURPOSE: &str = "account";
/// Linking and unlinking need a login at most this many seconds old.
pub const RECENT_LOGIN_SECS: i64 = 300;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", web::get().to(show))
        .route("/account/link/{provider}", web::post().to(link))
        .route("/account/unlink/{provider}", web::post().to(unlink))
        .route("/account/reauthenticate", web::post().to(reauthenticate))
        .route("/account/keys", web::post().to(create_key))
        .route("/account/keys/{key_id}/revoke", web::post().to(revoke_key))
        .route(
            "/account/password",
            web::post().to(credentials::change_password),
        )
        .route("/account/email", web::post().to(credentials::change_email));
    mfa::routes(cfg);
}

/// Key lifetimes the form offers, in days, as far as `api_keys.max_lifetime` allows.
const LIFETIME_DAYS: [i64; 5] = [1, 7, 30, 90, 365];
const DAY: i64 = 86_400;

/// Whether a session's login is recent enough to change the account's identities.
pub fn recent_enough(auth_time: UnixTime, now: UnixTime) -> bool {
    now - auth_time <= RECENT_LOGIN_SECS
}

const SIGN_IN_AGAIN: &str = "msg.account_sign_in_again";

fn account_error(status: StatusCode, msg: &str) -> PageError {
    PageError::new(status, "msg.title.account", msg)
}

fn csrf_token(app: &AppState, session: &SessionRecord) -> String {
    app.master.mac(ACCOUNT_PURPOSE, &session.id_hash)
}

/// A short, recognisable form of an upstream subject.
fn shorten(subject: &str) -> String {
    let mut chars = subject.chars();
    let head: String = chars.by_ref().take(12).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[derive(Deserialize)]
struct ShowQuery {
    /// A change that just worked (`credentials::done_notice`).
    done: Option<String>,
}

/// GET `/account`.
async fn show(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, PageError> {
    let Some(session) = browser::session(&req, &app).await? else {
        return Ok(app.pages.render(
            "account.html",
            StatusCode::UNAUTHORIZED,
            minijinja::context! { signed_in => false },
        ));
    };
    let notice = query.done.as_deref().and_then(credentials::done_notice);
    let extra = minijinja::context! { credentials_notice => notice };
    render_with(&app, &session, StatusCode::OK, None, None, extra).await
}

/// What the page says about the last key form: a key just made (with its secret,
/// shown this once) or why none was.
struct KeyOutcome {
    name: String,
    secret: SecretString,
}

/// `2026-05-01 12:30 UTC`.
fn day_text(at: UnixTime) -> String {
    let Ok(secs) = u64::try_from(at) else {
        return at.to_string();
    };
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let text = humantime::format_rfc3339_seconds(when).to_string();
    match text.get(..16) {
        Some(minutes) => format!("{} UTC", minutes.replacen('T', " ", 1)),
        None => text,
    }
}

fn key_view(key: &ApiKeyRecord, now: UnixTime) -> minijinja::Value {
    let status = match (key.revoked_at, key.expires_at <= now) {
        (Some(_), _) => "revoked",
        (None, true) => "expired",
        (None, false) => "active",
    };
    minijinja::context! {
        id => &key.id,
        name => &key.name,
        scopes => key.scopes.join(", "),
        created => day_text(key.created_at),
        expires => day_text(key.expires_at),
        last_used => key.last_used_at.map(day_text),
        status,
    }
}

/// The lifetimes the form offers (seconds, label); the longest allowed if no listed
/// one fits.
fn lifetime_choices(max_lifetime: i64) -> Vec<(i64, Text)> {
    let mut choices: Vec<(i64, Text)> = LIFETIME_DAYS
        .iter()
        .filter(|d| *d * DAY <= max_lifetime)
        .map(|d| {
            (
                d * DAY,
                if *d == 1 {
                    Text::new("msg.lifetime.one_day")
                } else {
                    Text::new("msg.lifetime.days").arg("days", d)
                },
            )
        })
        .collect();
    if choices.is_empty() {
        choices.push((
            max_lifetime,
            Text::new("msg.lifetime.seconds").arg("seconds", max_lifetime),
        ));
    }
    choices
}

/// The account page for a signed-in person.
async fn render(
    app: &AppState,
    session: &SessionRecord,
    status: StatusCode,
    created: Option<KeyOutcome>,
    key_error: Option<Text>,
) -> Result<HttpResponse, PageError> {
    let extra = minijinja::context! {};
    render_with(app, session, status, created, key_error, extra).await
}

/// The account page, with `extra` in its context (what a form just did).
async fn render_with(
    app: &AppState,
    session: &SessionRecord,
    status: StatusCode,
    created: Option<KeyOutcome>,
    key_error: Option<Text>,
    extra: minijinja::Value,
) -> Result<HttpResponse, PageError> {
    let user = app
        .store
        .get_user(&session.user_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading the user failed");
            internal()
        })?
        .ok_or_else(internal)?;
    let offer = credentials::offer(app, &user);
    let links = app
        .store
        .list_user_identities(&session.user_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "listing identities failed");
            internal()
        })?;
    let keys = app
        .store
        .list_user_api_keys(&session.user_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "listing API keys failed");
            internal()
        })?;
    let access =
        crate::identity::current_access(&app.store, &app.config.roles, &session.user_id, None)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "computing permissions failed");
                internal()
            })?;
    let name_of = |id: &str| {
        app.providers
            .get(id)
            .map(|e| e.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let linked: Vec<_> = links
        .iter()
        .map(|l| {
            minijinja::context! {
                provider_id => &l.provider_id,
                provider_name => name_of(&l.provider_id),
                subject => shorten(&l.subject),
            }
        })
        .collect();
    let linkable: Vec<_> = app
        .providers
        .all()
        .iter()
        .filter(|e| !links.iter().any(|l| l.provider_id == e.id))
        .map(|e| minijinja::context! { id => &e.id, name => &e.name })
        .collect();
    let now = app.clock.now();
    let second_factor = mfa::summary(app, &session.user_id).await?;
    let lifetimes: Vec<_> = lifetime_choices(app.config.api_keys.max_lifetime)
        .into_iter()
        .map(|(seconds, label)| minijinja::context! { seconds, label })
        .collect();
    let default_lifetime = lifetime_choices(app.config.api_keys.max_lifetime)
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| *s <= 30 * DAY)
        .max()
        .unwrap_or(app.config.api_keys.max_lifetime);
    Ok(app.pages.render(
        "account.html",
        status,
        minijinja::context! {
            signed_in => true,
            linked,
            linkable,
            csrf => csrf_token(app, session),
            recent => recent_enough(session.auth_time, now),
            keys => keys.iter().map(|k| key_view(k, now)).collect::<Vec<_>>(),
            permissions => access.permissions,
            lifetimes,
            default_lifetime,
            created_key_name => created.as_ref().map(|c| c.name.clone()),
            created_key_secret => created.as_ref().map(|c| c.secret.expose()),
            key_error,
            offer_password_change => offer.password,
            offer_email_change => offer.email,
            email => &user.email,
            email_verified => user.email_verified,
            min_password_length => app.config.account_policy.min_password_length,
            mfa => mfa::view(&second_factor),
            ..extra
        },
    ))
}

/// Why a key was not made, for the page.
fn key_request_text(e: &KeyRequestError) -> Text {
    match e {
        KeyRequestError::Name => {
            Text::new("msg.key_name_invalid").arg("max", api_keys::MAX_NAME_CHARS)
        }
        KeyRequestError::Lifetime { max } => Text::new("msg.key_lifetime_invalid").arg("max", max),
        KeyRequestError::TooMany(n) => Text::new("msg.key_too_many").arg("count", n),
        // Names the scopes the person may not grant: the domain's own words.
        KeyRequestError::Scope(why) => Text::new(why.clone()),
    }
}

fn internal() -> PageError {
    account_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        crate::web::pages::TRY_AGAIN,
    )
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// The session an account form acts for: live, its CSRF token good.
async fn form_session(
    req: &HttpRequest,
    app: &AppState,
    form: &CsrfForm,
) -> Result<SessionRecord, PageError> {
    let Some(session) = browser::session(req, app).await? else {
        return Err(account_error(
            StatusCode::UNAUTHORIZED,
            "msg.account_not_signed_in",
        ));
    };
    let good = form
        .csrf
        .as_deref()
        .is_some_and(|t| app.master.verify_mac(ACCOUNT_PURPOSE, &session.id_hash, t));
    if !good {
        tracing::warn!("account form with a missing or wrong CSRF token");
        return Err(account_error(
            StatusCode::FORBIDDEN,
            "msg.account_form_expired",
        ));
    }
    Ok(session)
}

/// The session a link or unlink form may act for: a form session whose login is
/// recent.
async fn authorised_session(
    req: &HttpRequest,
    app: &AppState,
    form: &CsrfForm,
) -> Result<SessionRecord, PageError> {
    let session = form_session(req, app, form).await?;
    if !recent_enough(session.auth_time, app.clock.now()) {
        return Err(account_error(StatusCode::FORBIDDEN, SIGN_IN_AGAIN));
    }
    Ok(session)
}

/// The fields of the key form; `scope` may be sent once per checked permission.
struct KeyForm {
    csrf: CsrfForm,
    name: String,
    lifetime: Option<i64>,
    scopes: Vec<String>,
}

impl KeyForm {
    fn parse(body: &[u8]) -> Result<Self, PageError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| account_error(StatusCode::BAD_REQUEST, "msg.form_malformed"))?;
        let one = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Ok(KeyForm {
            csrf: CsrfForm { csrf: one("csrf") },
            name: one("name").unwrap_or_default(),
            lifetime: one("expires_in").and_then(|v| v.trim().parse().ok()),
            scopes: pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .collect(),
        })
    }
}

/// POST `/account/keys`: make an API key (needs a recent sign-in, as a long-lived
/// credential should). The answer is the account page showing the secret once.
async fn create_key(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let form = KeyForm::parse(&body)?;
    let session = form_session(&req, &app, &form.csrf).await?;
    if !recent_enough(session.auth_time, app.clock.now()) {
        let why = "msg.key_needs_recent";
        return render(
            &app,
            &session,
            StatusCode::FORBIDDEN,
            None,
            Some(why.into()),
        )
        .await;
    }
    let Some(lifetime) = form.lifetime else {
        let why = "msg.key_choose_expiry".into();
        return render(&app, &session, StatusCode::BAD_REQUEST, None, Some(why)).await;
    };
    let actor = format!("user:{}", session.user_id);
    let made = api_keys::create_api_key(
        &app.store,
        &app.config,
        &session.user_id,
        &NewApiKey {
            name: &form.name,
            scopes: &form.scopes,
            lifetime,
        },
        &actor,
        app.clock.now(),
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "making an API key failed");
        internal()
    })?;
    match made {
        Ok(created) => {
            tracing::info!(user = %session.user_id, key_id = %created.key.id, "API key created on the account page");
            let outcome = KeyOutcome {
                name: created.key.name.clone(),
                secret: created.secret,
            };
            render(&app, &session, StatusCode::OK, Some(outcome), None).await
        }
        Err(e) => {
            let status = match e {
                KeyRequestError::TooMany(_) => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            render(&app, &session, status, None, Some(key_request_text(&e))).await
        }
    }
}

/// POST `/account/keys/{key_id}/revoke`: revoke one of the person's keys, at once.
async fn revoke_key(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let session = form_session(&req, &app, &form).await?;
    let actor = format!("user:{}", session.user_id);
    let revoked =
        api_keys::revoke_api_key(&app.store, &session.user_id, &path, &actor, app.clock.now())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "revoking an API key failed");
                internal()
            })?;
    if revoked {
        tracing::info!(user = %session.user_id, key_id = %path.as_str(), "API key revoked on the account page");
    }
    Ok(see_other("/account"))
}

/// POST `/account/reauthenticate`: sign in again at the session's provider, forced
/// upstream (`prompt=login`), to renew the session's authentication time.
async fn reauthenticate(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let session = form_session(&req, &app, &form).await?;
    if app.providers.get(&session.provider_id).is_none() {
        return Err(account_error(
            StatusCode::CONFLICT,
            "msg.account_method_gone",
        ));
    }
    let intent = AccountIntent {
        user_id: session.user_id.clone(),
        session_hash: session.id_hash.clone(),
        provider_id: session.provider_id.clone(),
    };
    let started = PendingLogin::start(&app, &req, Purpose::Reauthenticate(intent)).await?;
    tracing::info!(provider = %session.provider_id, user = %session.user_id, "re-authentication started");
    Ok(started.into_response())
}

/// POST `/account/link/{provider}`: start a login at the provider whose result links to
/// this session's user.
async fn link(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let session = authorised_session(&req, &app, &form).await?;
    let Some(entry) = app.providers.get(&path) else {
        return Err(account_error(StatusCode::NOT_FOUND, "msg.no_such_method"));
    };
    let intent = AccountIntent {
        user_id: session.user_id.clone(),
        session_hash: session.id_hash.clone(),
        provider_id: entry.id.clone(),
    };
    let started = PendingLogin::start(&app, &req, Purpose::Link(intent)).await?;
    tracing::info!(provider = %entry.id, user = %session.user_id, "account link started");
    Ok(started.into_response())
}

/// POST `/account/unlink/{provider}`.
async fn unlink(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let session = authorised_session(&req, &app, &form).await?;
    let now = app.clock.now();
    match identity::unlink_from_user(&app.store, &session.user_id, &path, now).await {
        Ok(()) => Ok(see_other("/account")),
        Err(IdentityError::LastWayIn) => {
            Err(account_error(StatusCode::CONFLICT, "msg.only_method"))
        }
        Err(IdentityError::NotLinked(_)) => {
            Err(account_error(StatusCode::NOT_FOUND, "msg.not_linked"))
        }
        Err(e) => {
            tracing::error!(error = %e, "unlinking failed");
            Err(internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recent_login_may_change_identities() {
        assert!(recent_enough(1000, 1000));
        assert!(recent_enough(1000, 1000 + RECENT_LOGIN_SECS));
        assert!(!recent_enough(1000, 1001 + RECENT_LOGIN_SECS));
    }

    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(day_text(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn the_key_form_offers_lifetimes_within_the_maximum() {
        let offered: Vec<i64> = lifetime_choices(90 * DAY).iter().map(|c| c.0).collect();
        assert_eq!(offered, [DAY, 7 * DAY, 30 * DAY, 90 * DAY]);
        assert_eq!(
            lifetime_choices(3600)
                .iter()
                .map(|(s, l)| (*s, l.english()))
                .collect::<Vec<_>>(),
            [(3600, "3600 seconds".to_string())]
        );
    }

    #[test]
    fn the_key_form_reads_every_checked_scope() {
        let form = KeyForm::parse(b"csrf=t&name=ci&expires_in=60&scope=a:b&scope=c:d").unwrap();
        assert_eq!(form.scopes, ["a:b", "c:d"]);
        assert_eq!(form.lifetime, Some(60));
        assert_eq!(form.csrf.csrf.as_deref(), Some("t"));
    }

    #[test]
    fn long_subjects_are_shortened() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten("0123456789abcdef"), "0123456789ab…");
    }
}
