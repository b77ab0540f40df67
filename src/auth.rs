//! Bearer-token verification: RS256 against a JWKS URL (cached, refreshed on an unknown `kid`)
//! or a PEM public key, or HS256 with a shared secret for local use. The algorithm is fixed by
//! the configured key, so `alg: none` and algorithm confusion are refused; issuer from an
//! allow-list, audience when configured, expiry always.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::config::AuthArgs;

/// Why a token was refused. Messages are safe to return (they never echo the token).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Anything wrong with the token itself.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The claims the service uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The user's id (Keycloak subject).
    pub sub: String,
    /// Issuer (checked against the allow-list).
    pub iss: String,
    /// Issued at (seconds since the epoch), when the token says.
    #[serde(default)]
    pub iat: Option<i64>,
}

enum Keys {
    Static(DecodingKey),
    Jwks {
        url: String,
        http: reqwest::Client,
        cache: RwLock<JwksCache>,
    },
}

#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

/// Verifies bearer tokens.
pub struct Verifier {
    alg: Algorithm,
    keys: Keys,
    issuers: Vec<String>,
    audience: Option<String>,
}

/// A refresh of the JWKS happens at most this often (unknown `kid`s cannot force more).
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

impl Verifier {
    /// Builds the verifier from configuration; exactly one key source must be set.
    pub fn from_args(args: &AuthArgs) -> anyhow::Result<Self> {
        let issuers: Vec<String> = args
            .jwt_issuers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        anyhow::ensure!(
            !issuers.is_empty(),
            "--jwt-issuers must list at least one issuer"
        );
        let audience = Some(args.jwt_audience.trim().to_string()).filter(|a| !a.is_empty());
        let set = [
            !args.jwt_hs256_secret.is_empty(),
            !args.jwt_rs256_pem.is_empty(),
            !args.jwt_jwks_url.is_empty(),
        ];
        anyhow::ensure!(
            set.iter().filter(|s| **s).count() == 1,
            "configure exactly one of --jwt-jwks-url, --jwt-rs256-pem or --jwt-hs256-secret"
        );
        let (alg, keys) = if !args.jwt_hs256_secret.is_empty() {
            anyhow::ensure!(
                args.jwt_hs256_secret.len() >= 32,
                "--jwt-hs256-secret must be at least 32 bytes"
            );
            (
                Algorithm::HS256,
                Keys::Static(DecodingKey::from_secret(args.jwt_hs256_secret.as_bytes())),
            )
        } else if !args.jwt_rs256_pem.is_empty() {
            let pem = std::fs::read(&args.jwt_rs256_pem).map_err(|e| {
                anyhow::anyhow!("reading --jwt-rs256-pem {}: {e}", args.jwt_rs256_pem)
            })?;
            (
                Algorithm::RS256,
                Keys::Static(DecodingKey::from_rsa_pem(&pem)?),
            )
        } else {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?;
            (
                Algorithm::RS256,
                Keys::Jwks {
                    url: args.jwt_jwks_url.clone(),
                    http,
                    cache: RwLock::default(),
                },
            )
        };
        Ok(Self {
            alg,
            keys,
            issuers,
            audience,
        })
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if header.alg != self.alg {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        let mut v = Validation::new(self.alg);
        // Not before: checked with the same leeway as the expiry.
        v.validate_nbf = true;
        v.set_issuer(&self.issuers);
        v.set_required_spec_claims(&["exp", "sub", "iss"]);
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        let claims = decode::<Claims>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        // A token issued in the future (beyond the leeway) is as suspect as an expired one.
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if claims.iat.is_some_and(|iat| iat > now + v.leeway as i64) {
            return Err(AuthError::Invalid("token issued in the future".into()));
        }
        Ok(claims)
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        let (url, http, cache) = match &self.keys {
            Keys::Static(k) => return Ok(k.clone()),
            Keys::Jwks { url, http, cache } => (url, http, cache),
        };
        let kid = kid.ok_or_else(|| AuthError::Invalid("token has no kid".into()))?;
        if let Some(k) = cache.read().await.keys.get(kid) {
            return Ok(k.clone());
        }
        let mut c = cache.write().await;
        if c.fetched.is_none_or(|t| t.elapsed() >= JWKS_MIN_REFRESH) {
            c.fetched = Some(Instant::now());
            match fetch_jwks(http, url).await {
                Ok(keys) => c.keys = keys,
                Err(e) => tracing::warn!(error = %e, "could not refresh the JWKS"),
            }
        }
        c.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::Invalid("unknown signing key".into()))
    }
}

async fn fetch_jwks(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<HashMap<String, DecodingKey>> {
    let set: JwkSet = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(set
        .keys
        .iter()
        .filter_map(|k| Some((k.common.key_id.clone()?, DecodingKey::from_jwk(k).ok()?)))
        .collect())
}

/// The token from an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}
