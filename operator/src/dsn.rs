//! DSNs in the exact forms DBHub 1.4 parses (shared/DBHUB.md), built from a Database spec and
//! its credentials. User and password are percent-encoded with JavaScript's
//! `encodeURIComponent` set: a raw `/`, `?`, `@`, `:` or `%` would break DBHub's parser.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::crd::{DatabaseSpec, DatabaseType, SslMode};

/// Everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`, as `encodeURIComponent` does.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// A user name and password read from a Secret. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name to connect as.
    pub user: String,
    /// Password (never printed by `Debug`).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

impl Credentials {
    /// The strings that must never appear in a message: the password, raw and percent-encoded.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.password.is_empty() {
            out.push(self.password.clone());
            out.push(encode(&self.password));
        }
        out
    }
}

/// The logins of a Database: the main one, and optionally a read-only one for DBHub's
/// read-only source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logins {
    /// The login every write (and, without a read-only login, every read) uses.
    pub main: Credentials,
    /// A login the database itself keeps read-only (only SELECT granted).
    pub readonly: Option<Credentials>,
}

impl Logins {
    /// The login reads use: the read-only one when there is one.
    pub fn for_reads(&self) -> &Credentials {
        self.readonly.as_ref().unwrap_or(&self.main)
    }

    /// Every string that must never appear in a message (passwords, raw and encoded).
    pub fn secrets(&self) -> Vec<String> {
        let mut out = self.main.secrets();
        if let Some(r) = &self.readonly {
            out.extend(r.secrets());
        }
        out
    }
}

/// A connection string holding a password. `Debug`/`Display` never show it; call
/// [`Dsn::expose`] only where it is written to a Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn(String);

impl Dsn {
    /// The full DSN, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dsn(***)")
    }
}

/// Why no DSN can be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsnError {
    /// A network type without a host.
    #[error("spec.host is required for type {0}")]
    MissingHost(&'static str),
    /// A type that needs a database name without one.
    #[error("spec.database is required for type {0}")]
    MissingDatabase(&'static str),
    /// A network type without credentials.
    #[error("credentials are required for type {0}")]
    MissingCredentials(&'static str),
    /// A database name DBHub would split wrongly (it does not decode it).
    #[error("spec.database must not contain '/', '?' or '#' for type {0}")]
    BadDatabaseName(&'static str),
}

/// Percent-encodes with the `encodeURIComponent` set.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The DSN DBHub needs for this database.
pub fn build(spec: &DatabaseSpec, creds: Option<&Credentials>) -> Result<Dsn, DsnError> {
    let ty = spec.db_type;
    if ty == DatabaseType::Sqlite {
        let path = spec
            .database
            .as_deref()
            .ok_or(DsnError::MissingDatabase(ty.as_str()))?;
        return Ok(Dsn(format!("sqlite://{path}")));
    }
    let host = spec
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .ok_or(DsnError::MissingHost(ty.as_str()))?;
    let creds = creds.ok_or(DsnError::MissingCredentials(ty.as_str()))?;
    let port = spec.port.or(ty.default_port()).unwrap_or_default();
    let database = spec.database.as_deref().unwrap_or_default();
    if matches!(ty, DatabaseType::Mysql | DatabaseType::Mariadb) && database.is_empty() {
        return Err(DsnError::MissingDatabase(ty.as_str()));
    }
    if database.contains(['/', '?', '#']) {
        return Err(DsnError::BadDatabaseName(ty.as_str()));
    }
    // An IPv6 literal needs brackets in the authority.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut dsn = format!(
        "{}://{}:{}@{host}:{port}/{database}",
        ty.as_str(),
        encode(&creds.user),
        encode(&creds.password)
    );
    if let Some(mode) = ssl_param(ty, spec.ssl_mode) {
        dsn.push_str("?sslmode=");
        dsn.push_str(mode);
    }
    Ok(Dsn(dsn))
}

/// The spec DBHub connects with: `allow`/`prefer` replaced by the mode the last check found in
/// effect (`status.effectiveSslMode`).
pub fn effective_spec(db: &crate::crd::Database) -> DatabaseSpec {
    let mut spec = db.spec.clone();
    if matches!(spec.ssl_mode, Some(SslMode::Allow | SslMode::Prefer))
        && let Some(effective) = db.status.as_ref().and_then(|s| s.effective_ssl_mode)
    {
        spec.ssl_mode = Some(effective);
    }
    spec
}

/// DBHub's `sslmode` per engine: verify-* only exists for postgres (the CRD refuses it elsewhere,
/// and should one slip through it is downgraded to `require`, never to no TLS). An unresolved
/// `prefer` asks for TLS, an unresolved `allow` for none (see [`effective_spec`]).
fn ssl_param(ty: DatabaseType, mode: Option<SslMode>) -> Option<&'static str> {
    let mode = mode?;
    Some(match (ty, mode) {
        (_, SslMode::Disable | SslMode::Allow) => "disable",
        (_, SslMode::Require | SslMode::Prefer) => "require",
        (DatabaseType::Postgres, SslMode::VerifyCa) => "verify-ca",
        (DatabaseType::Postgres, SslMode::VerifyFull) => "verify-full",
        (_, SslMode::VerifyCa | SslMode::VerifyFull) => "require",
    })
}

#[cfg(test)]
mod tests;
