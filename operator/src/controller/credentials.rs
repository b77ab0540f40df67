//! Reads a Database's credentials from its Secret, honouring a cross-namespace reference only
//! when the Secret's `dbhub.tas.io/allowed-namespaces` annotation lists the Database's
//! namespace (or `*`). The annotation is read from metadata first, so a refused Secret's data
//! is never fetched.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::crd::Database;
use crate::dsn::{Credentials, Logins};

/// The annotation that lets Databases in other namespaces use a Secret.
pub const ALLOWED_NAMESPACES: &str = "dbhub.tas.io/allowed-namespaces";

/// Why credentials are unavailable. Messages name what is missing, never a value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The Secret lives in another namespace that did not allow this one.
    #[error(
        "Secret {namespace}/{name} does not allow namespace {from} (annotation {ALLOWED_NAMESPACES})"
    )]
    NotPermitted {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The Database's namespace.
        from: String,
    },
    /// No such Secret.
    #[error("Secret {namespace}/{name} not found")]
    SecretNotFound {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
    },
    /// The Secret lacks a key (or it is not UTF-8).
    #[error("Secret {namespace}/{name} has no usable key {key:?}")]
    KeyMissing {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The missing key.
        key: String,
    },
    /// The spec names no Secret for a type that needs one.
    #[error("spec.credentialsRef is required for type {0}")]
    NoReference(&'static str),
    /// The API call failed (transient).
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl CredentialsError {
    /// Machine-readable reason for conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotPermitted { .. } => "ReferenceNotPermitted",
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::KeyMissing { .. } => "SecretKeyMissing",
            Self::NoReference(_) => "NoCredentialsRef",
            Self::Kube(_) => "SecretReadFailed",
        }
    }
}

/// The (namespace, name) of the Secret a Database references, if any.
pub fn secret_ref(db: &Database) -> Option<(String, String)> {
    let r = db.spec.credentials_ref.as_ref()?;
    let ns = r.namespace.clone().or_else(|| db.namespace())?;
    Some((ns, r.name.clone()))
}

/// Whether the annotation value admits `namespace`.
pub fn allows(annotation: Option<&str>, namespace: &str) -> bool {
    annotation.is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|n| n == "*" || n == namespace)
    })
}

/// Resolves the logins (None for sqlite, which needs none).
pub async fn resolve(client: &Client, db: &Database) -> Result<Option<Logins>, CredentialsError> {
    Ok(resolve_versioned(client, db).await?.0)
}

/// As [`resolve`], with the `resourceVersion` of the Secret they were read from (None for
/// sqlite): a later check can tell whether the credentials changed since.
pub async fn resolve_versioned(
    client: &Client,
    db: &Database,
) -> Result<(Option<Logins>, Option<String>), CredentialsError> {
    let Some(r) = db.spec.credentials_ref.as_ref() else {
        return match db.spec.db_type {
            crate::crd::DatabaseType::Sqlite => Ok((None, None)),
            other => Err(CredentialsError::NoReference(other.as_str())),
        };
    };
    let own_ns = db.namespace().unwrap_or_default();
    let (namespace, name) = secret_ref(db).unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let not_found = || CredentialsError::SecretNotFound {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    if namespace != own_ns {
        let meta = api.get_metadata_opt(&name).await?.ok_or_else(not_found)?;
        if !allows(
            meta.annotations()
                .get(ALLOWED_NAMESPACES)
                .map(String::as_str),
            &own_ns,
        ) {
            return Err(CredentialsError::NotPermitted {
                namespace,
                name,
                from: own_ns,
            });
        }
    }
    let secret = api.get_opt(&name).await?.ok_or_else(not_found)?;
    let version = secret.resource_version();
    let data = secret.data.unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .ok_or_else(|| CredentialsError::KeyMissing {
                namespace: namespace.clone(),
                name: name.clone(),
                key: key.into(),
            })
    };
    let readonly = match (&r.readonly_user_key, &r.readonly_password_key) {
        (Some(u), Some(p)) => Some(Credentials {
            user: value(u)?,
            password: value(p)?,
        }),
        _ => None,
    };
    Ok((
        Some(Logins {
            main: Credentials {
                user: value(&r.user_key)?,
                password: value(&r.password_key)?,
            },
            readonly,
        }),
        version,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_lists_and_wildcard() {
        assert!(allows(Some("a, b"), "b"));
        assert!(allows(Some("*"), "x"));
        assert!(!allows(Some("ab"), "a"));
        assert!(!allows(None, "a"));
        assert!(!allows(Some(""), "a"));
    }
}
