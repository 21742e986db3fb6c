//! A relying party as apps build it: the `openidconnect` crate, configured from
//! discovery only.

use crate::HTTP_TIMEOUT;
use crate::broker::Broker;
use crate::clients::TestClient;
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, RedirectUrl,
};

/// A `CoreClient` built from discovery (authorization endpoint set; token and userinfo
/// endpoints as the document says).
pub type RpClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// One app's view of the broker: its client, with the JWKS fetched at discovery.
#[derive(Debug)]
pub struct RelyingParty {
    pub client: RpClient,
    pub metadata: CoreProviderMetadata,
    /// The app's HTTP client: never follows redirects (as the crate advises).
    pub http: reqwest::Client,
}

impl RelyingParty {
    /// Discovery (and JWKS) now, as `client`.
    pub async fn discover(broker: &Broker, client: &TestClient) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("build the relying party's HTTP client");
        let issuer = IssuerUrl::new(broker.issuer().to_string()).expect("the issuer is a URL");
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .unwrap_or_else(|e| panic!("discovery failed: {e:?}"));
        let rp_client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(client.id.to_string()),
            client.secret.map(|s| ClientSecret::new(s.to_string())),
        )
        .set_redirect_uri(
            RedirectUrl::new(client.redirect_uri.to_string()).expect("a redirect URL"),
        );
        RelyingParty {
            client: rp_client,
            metadata,
            http,
        }
    }
}
