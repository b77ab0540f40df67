//! Reads a Database's credentials from its Secret, honouring a cross-namespace reference only
//! when the Secret's `dbhub.tas.io/allowed-namespaces` annotation lists the Database's
//! namespace (or `*`). The annotation is read from metadata first, so a refused Secret's data
//! is never fetched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
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
    resolve_with(client, None, db).await
}

/// Secrets' data as last read, reused while the Secret's `resourceVersion` in a metadata watch
/// cache is unchanged: a reconciler that renders many Databases sharing a Secret (or renders
/// the same ones again) reads each Secret once per change instead of once per Database per pass.
/// A Secret the metadata cache does not hold (not yet listed, outside the watched namespaces,
/// absent) is read from the API as without a cache.
pub struct SecretCache {
    meta: Store<PartialObjectMeta<Secret>>,
    data: Mutex<HashMap<(String, String), Cached>>,
}

struct Cached {
    version: String,
    data: BTreeMap<String, ByteString>,
}

impl SecretCache {
    /// A cache over `meta`, the reflector store of a Secret metadata watch.
    pub fn new(meta: Store<PartialObjectMeta<Secret>>) -> Self {
        Self {
            meta,
            data: Mutex::new(HashMap::new()),
        }
    }

    /// [`resolve`] through the cache.
    pub async fn resolve(
        &self,
        client: &Client,
        db: &Database,
    ) -> Result<Option<Logins>, CredentialsError> {
        Ok(resolve_with(client, Some(self), db).await?.0)
    }

    /// The `allowed-namespaces` annotation and `resourceVersion` of `namespace/name` in the
    /// metadata cache; `None` when it does not hold the Secret.
    fn meta(&self, namespace: &str, name: &str) -> Option<(Option<String>, String)> {
        let meta = self.meta.get(&ObjectRef::new(name).within(namespace))?;
        Some((
            meta.annotations().get(ALLOWED_NAMESPACES).cloned(),
            meta.resource_version().unwrap_or_default(),
        ))
    }

    /// The data of `namespace/name`: the cached copy when it was read at `version`, else read
    /// from the API (and remembered). `None`: there is no such Secret.
    async fn data(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<SecretData>, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(c) = self.data.lock().unwrap().get(&key)
            && c.version == version
        {
            return Ok(Some((c.data.clone(), Some(c.version.clone()))));
        }
        let read = read(api, name).await?;
        if let Some((data, Some(version))) = &read {
            self.data.lock().unwrap().insert(
                key,
                Cached {
                    version: version.clone(),
                    data: data.clone(),
                },
            );
        }
        Ok(read)
    }

    /// Forgets Secrets the metadata cache no longer holds (deleted ones).
    pub fn prune(&self) {
        self.data
            .lock()
            .unwrap()
            .retain(|(ns, name), _| self.meta.get(&ObjectRef::new(name).within(ns)).is_some());
    }
}

/// A Secret's data and the `resourceVersion` it was read at.
type SecretData = (BTreeMap<String, ByteString>, Option<String>);

/// Reads Secret `name` from the API; `None` when there is none.
async fn read(api: &Api<Secret>, name: &str) -> Result<Option<SecretData>, kube::Error> {
    Ok(api.get_opt(name).await?.map(|s| {
        let version = s.resource_version();
        (s.data.unwrap_or_default(), version)
    }))
}

async fn resolve_with(
    client: &Client,
    cache: Option<&SecretCache>,
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
    let cross = namespace != own_ns;
    // The metadata cache's view of the Secret, if it holds it.
    let cached = cache.and_then(|c| Some((c, c.meta(&namespace, &name)?)));
    if cross {
        let annotation = match &cached {
            Some((_, (annotation, _))) => annotation.clone(),
            None => api
                .get_metadata_opt(&name)
                .await?
                .ok_or_else(not_found)?
                .annotations()
                .get(ALLOWED_NAMESPACES)
                .cloned(),
        };
        if !allows(annotation.as_deref(), &own_ns) {
            return Err(CredentialsError::NotPermitted {
                namespace,
                name,
                from: own_ns,
            });
        }
    }
    let (data, version) = match &cached {
        Some((cache, (_, version))) => cache.data(&api, &namespace, &name, version).await?,
        None => read(&api, &name).await?,
    }
    .ok_or_else(not_found)?;
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
