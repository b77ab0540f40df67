//! An RS256 signing key and its JWKS, as an OIDC issuer (Keycloak) publishes it: the key in a PEM
//! file (created with openssl when missing), the JWKS document derived from it, and tokens signed
//! with it. Used by tests/node.rs and by the local demo (examples/dev_demo.rs), whose service runs
//! in pods and verifies tokens against the JWKS URL like any deployment would.

use std::path::Path;

use serde_json::{Value, json};

/// Key id in the JWKS and in every token's header.
pub const KID: &str = "aether-dbhub-local";

/// A signing key and its public JWKS.
pub struct Keys {
    /// `{"keys": [{kty: RSA, kid, n, e, ...}]}`.
    pub jwks: Value,
    key: jsonwebtoken::EncodingKey,
}

impl Keys {
    /// Loads the key at `pem`, creating it (RSA 2048, openssl) when missing.
    pub fn load_or_create(pem: &Path) -> Result<Self, String> {
        // A key that is missing or unreadable (a run stopped while `openssl genrsa` was writing
        // it left an empty file once) is made again; written beside it and renamed into place,
        // so an interrupted run never leaves a half-written key.
        let readable = std::fs::read(pem)
            .ok()
            .is_some_and(|b| jsonwebtoken::EncodingKey::from_rsa_pem(&b).is_ok());
        if !readable {
            if let Some(dir) = pem.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let fresh = pem.with_extension("pem.new");
            let ok = std::process::Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(&fresh)
                .arg("2048")
                .output()
                .map_err(|e| format!("running openssl: {e}"))?
                .status
                .success();
            if !ok {
                return Err("openssl genrsa failed".into());
            }
            std::fs::rename(&fresh, pem).map_err(|e| e.to_string())?;
        }
        let out = std::process::Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(pem)
            .output()
            .map_err(|e| format!("running openssl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let hex = text.trim().trim_start_matches("Modulus=");
        let modulus = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| format!("unexpected openssl output: {text}"))?;
        let jwks = json!({"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
                                     "n": base64url(&modulus), "e": "AQAB"}]});
        let pem_bytes = std::fs::read(pem).map_err(|e| e.to_string())?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem_bytes).map_err(|e| e.to_string())?;
        Ok(Self { jwks, key })
    }

    /// A token for `sub` from issuer `iss`, valid for `secs`.
    pub fn token(&self, iss: &str, sub: &str, secs: u64) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(KID.into());
        jsonwebtoken::encode(
            &header,
            &json!({"sub": sub, "iss": iss, "iat": now, "exp": now + secs}),
            &self.key,
        )
        .expect("signing with an RSA key")
    }

    /// Serves the JWKS at `GET /certs` on `listener` until the task is aborted.
    pub fn serve(&self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let jwks = self.jwks.clone();
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }
}

/// Base64url without padding (RFC 4648 §5), as JWK members are encoded.
pub fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn base64url_matches_rfc4648() {
    assert_eq!(base64url(b""), "");
    assert_eq!(base64url(b"f"), "Zg");
    assert_eq!(base64url(b"fo"), "Zm8");
    assert_eq!(base64url(b"foo"), "Zm9v");
    assert_eq!(base64url(b"foob"), "Zm9vYg");
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
}
