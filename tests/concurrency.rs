//! One-time credentials under a race: many concurrent uses, exactly one winner, and
//! every loser told `invalid_grant` (never a server error).

use reqwest::StatusCode;
use std::sync::Arc;
use switchboard_e2e::{ADMIN, AuthorizeRequest, Broker, Browser, TokenReply, WEB_APP};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const RACERS: usize = 8;

/// Runs `RACERS` copies of `attempt` released at the same instant; their replies.
async fn race<F, Fut>(broker: &Arc<Broker>, attempt: F) -> Vec<TokenReply>
where
    F: Fn(Arc<Broker>) -> Fut,
    Fut: std::future::Future<Output = TokenReply> + Send + 'static,
{
    let start = Arc::new(Barrier::new(RACERS));
    let mut set = JoinSet::new();
    for _ in 0..RACERS {
        let start = start.clone();
        let run = attempt(broker.clone());
        set.spawn(async move {
            start.wait().await;
            run.await
        });
    }
    set.join_all().await
}

fn assert_one_winner(replies: &[TokenReply]) {
    let winners = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(winners, 1, "exactly one success: {replies:#?}");
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_error("invalid_grant");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_of_one_code_have_one_winner() {
    let broker = Arc::new(Broker::start().await);
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let verifier = request.verifier().map(str::to_string);

    let replies = race(&broker, |broker| {
        let code = code.clone();
        let verifier = verifier.clone();
        async move { broker.redeem(&WEB_APP, &code, verifier.as_deref()).await }
    })
    .await;
    assert_one_winner(&replies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_grace_concurrent_rotations_of_one_refresh_token_have_one_winner() {
    // Within the default grace they all win, one live token (tests/refresh_retries.rs).
    let broker = Arc::new(
        Broker::setup()
            .tokens("refresh_reuse_grace = \"0s\"")
            .start()
            .await,
    );
    let browser = Browser::new(&broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;
    let refresh_token = tokens.refresh_token().to_string();

    let replies = race(&broker, |broker| {
        let refresh_token = refresh_token.clone();
        async move { broker.refresh(&WEB_APP, &refresh_token).await }
    })
    .await;
    assert_one_winner(&replies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_form_submitted_twice_at_once_gives_one_code() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let form = Arc::new(
        browser
            .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
            .await
            .expect_form(),
    );
    let start = Arc::new(Barrier::new(2));
    let mut set = JoinSet::new();
    for _ in 0..2 {
        let (browser, form, start) = (browser.clone(), form.clone(), start.clone());
        set.spawn(async move {
            start.wait().await;
            browser.submit(&form, ADMIN.username, ADMIN.password).await
        });
    }
    let landings = set.join_all().await;
    let codes = landings
        .iter()
        .filter(|l| matches!(l, switchboard_e2e::Landing::Client(r) if r.param("code").is_some()))
        .count();
    assert_eq!(codes, 1, "one pending request, one code: {landings:#?}");
}
