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
use crate::ttl::TtlMap;

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
    /// Expiry (seconds since the epoch; required, checked by the validation).
    #[serde(default)]
    pub exp: Option<f64>,
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
    verified: TtlMap<String, VerifiedToken>,
}

/// A token that passed every check, as remembered (by its exact text) for [`VERIFIED_FOR`]:
/// a client sends the same bearer token with every request, so its signature and claims are
/// checked once per that time rather than on each request. A remembered token never outlives
/// its expiry (plus the validation's leeway), and a token whose key leaves the JWKS keeps
/// working for at most [`VERIFIED_FOR`] after its last check. At most [`VERIFIED_MAX`].
#[derive(Clone)]
struct VerifiedToken {
    claims: Claims,
    /// Seconds since the epoch after which the token is expired (expiry + leeway).
    until: u64,
}

/// How long a verified token is taken as verified without checking it again.
const VERIFIED_FOR: Duration = Duration::from_secs(30);
/// Tokens remembered at most.
const VERIFIED_MAX: usize = 4096;

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
            verified: TtlMap::bounded(VERIFIED_FOR, VERIFIED_MAX),
        })
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(claims) = self.remembered(token, now) {
            return Ok(claims);
        }
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
        if claims
            .iat
            .is_some_and(|iat| iat > now as i64 + v.leeway as i64)
        {
            return Err(AuthError::Invalid("token issued in the future".into()));
        }
        self.remember(token, &claims, v.leeway);
        Ok(claims)
    }

    /// The claims of `token` if it passed every check less than [`VERIFIED_FOR`] ago and is
    /// not expired at `now`.
    fn remembered(&self, token: &str, now: u64) -> Option<Claims> {
        self.verified
            .get(token)
            .filter(|v| now <= v.until)
            .map(|v| v.claims)
    }

    fn remember(&self, token: &str, claims: &Claims, leeway: u64) {
        if let Some(exp) = claims.exp.filter(|e| e.is_finite() && *e >= 0.0) {
            let until = (exp as u64).saturating_add(leeway);
            let claims = claims.clone();
            self.verified
                .insert(token.to_string(), VerifiedToken { claims, until });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

    fn verifier() -> Verifier {
        Verifier::from_args(&AuthArgs {
            jwt_issuers: "https://issuer.test".into(),
            jwt_audience: String::new(),
            jwt_jwks_url: String::new(),
            jwt_rs256_pem: String::new(),
            jwt_hs256_secret: SECRET.into(),
        })
        .unwrap()
    }

    fn token(exp: u64) -> String {
        let claims = serde_json::json!({"sub": "u1", "iss": "https://issuer.test", "exp": exp});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_only_until_it_expires_and_only_as_sent() {
        let v = verifier();
        let now = jsonwebtoken::get_current_timestamp();
        let t = token(now + 120);
        assert_eq!(v.verify(&t).await.unwrap().sub, "u1");
        assert!(
            v.remembered(&t, now).is_some(),
            "a verified token is remembered"
        );
        // Past its expiry plus the leeway the remembered verdict no longer counts.
        assert!(v.remembered(&t, now + 120 + 61).is_none());
        // Another text (one byte of the signature changed) is not a hit, and is refused.
        let mut forged = t.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(v.remembered(&forged, now).is_none());
        assert!(v.verify(&forged).await.is_err());
        // An expired token is refused and not remembered.
        let old = token(now - 3600);
        assert!(v.verify(&old).await.is_err());
        assert!(v.remembered(&old, now).is_none());
    }

    #[test]
    fn the_remembered_tokens_are_bounded() {
        let v = verifier();
        let claims = Claims {
            sub: "u".into(),
            iss: "i".into(),
            iat: None,
            exp: Some(2e9),
        };
        for n in 0..VERIFIED_MAX + 10 {
            v.remember(&format!("t{n}"), &claims, 60);
        }
        assert!(v.verified.len() <= VERIFIED_MAX);
        assert!(v.remembered(&format!("t{}", VERIFIED_MAX + 9), 1).is_some());
    }
}
