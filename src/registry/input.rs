//! What clients send to register or edit a database (snake_case, as the Aether frontend's
//! forms send it after conversion) and to test one without saving (the frontend's camelCase
//! body), and the validation that turns either into [`Settings`] plus an optional password.

use std::collections::BTreeMap;

use dbhub_operator::crd::{DatabaseType, SslMode, defaults};
use serde::Deserialize;
use serde_json::Value;

use crate::model::{FieldError, Settings};

/// Create/update body. Unknown and read-only fields are ignored (the edit form echoes the whole
/// record back); on update an absent field keeps its value and a missing password keeps the
/// old one.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct DatabaseInput {
    /// Display name, unique in the space (1-100 characters).
    pub name: Option<String>,
    /// `postgres`, `mysql`, `mariadb`, `sqlserver` or `sqlite`; the frontend's `postgresql`
    /// and `mssql` are accepted too.
    #[serde(rename = "type")]
    pub db_type: Option<String>,
    /// Server host name or IP address (not for sqlite).
    pub host: Option<String>,
    /// Server port, a number or a string holding one (default by type).
    #[schema(value_type = Option<i64>)]
    pub port: Option<Value>,
    /// Database name (required for mysql and mariadb).
    pub database: Option<String>,
    /// SQLite: the absolute path of the database file (instead of host, port and database).
    pub path: Option<String>,
    /// User name (not for sqlite).
    pub username: Option<String>,
    /// Password; write-only, kept only in a Kubernetes Secret and never returned.
    #[schema(write_only)]
    pub password: Option<String>,
    /// Optional read-only login (a user the database grants only SELECT): reads then run as
    /// this user, so the database's own grants keep them read-only. An empty string removes it.
    pub readonly_username: Option<String>,
    /// Its password; write-only, kept with the other in the Secret. Omit to keep the stored one.
    #[schema(write_only)]
    pub readonly_password: Option<String>,
    /// `disable`, `allow` (stored as disable), `prefer` (stored as require), `require`,
    /// `verify-ca` or `verify-full` (verify-* for postgres only).
    pub ssl_mode: Option<String>,
    /// Only reads may run (default true).
    pub readonly: Option<bool>,
    /// Most rows one query returns, 1-100000 (default 1000).
    pub max_rows: Option<i64>,
    /// Seconds to wait for a connection, 1-300 (default 30).
    pub connection_timeout: Option<i64>,
    /// Seconds a query may run, 1-3600 (default 15).
    pub query_timeout: Option<i64>,
    /// Free text, at most 1024 characters.
    pub description: Option<String>,
    /// String labels (at most 32; keys 1-63 characters, values at most 253).
    pub labels: Option<BTreeMap<String, String>>,
}

/// The connection form's "Test" body, in the frontend's camelCase and type ids.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct TestInput {
    /// `postgresql`, `mysql`, `mariadb`, `mssql` or `sqlite` (this API's ids work too).
    pub database_type: Option<String>,
    /// Server host name or IP address.
    pub host: Option<String>,
    /// Server port (a number or a string holding one).
    #[schema(value_type = Option<i64>)]
    pub port: Option<Value>,
    /// Database name (required for mysql and mariadb).
    pub database: Option<String>,
    /// SQLite file path.
    pub path: Option<String>,
    /// User name to connect as.
    pub username: Option<String>,
    /// Password (write-only).
    #[schema(write_only)]
    pub password: Option<String>,
    /// TLS mode, as for `ssl_mode`.
    pub ssl_mode: Option<String>,
}

/// Seconds a check started from the API may take at most.
pub const CHECK_TIMEOUT_SECS: i64 = 10;

impl TestInput {
    /// The same connection as a create body (nothing is saved).
    pub fn as_database_input(&self) -> DatabaseInput {
        DatabaseInput {
            name: Some("connection test".into()),
            db_type: self.database_type.clone(),
            host: self.host.clone(),
            port: self.port.clone(),
            database: self.database.clone(),
            path: self.path.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            ssl_mode: self.ssl_mode.clone(),
            connection_timeout: Some(CHECK_TIMEOUT_SECS),
            ..Default::default()
        }
    }
}

/// Maps a type id (ours or the frontend's) to the engine.
pub fn parse_type(s: &str) -> Option<DatabaseType> {
    match s.trim().to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => Some(DatabaseType::Postgres),
        "mysql" => Some(DatabaseType::Mysql),
        "mariadb" => Some(DatabaseType::Mariadb),
        "sqlserver" | "mssql" => Some(DatabaseType::Sqlserver),
        "sqlite" => Some(DatabaseType::Sqlite),
        _ => None,
    }
}

/// Maps an SSL mode. `allow` becomes `disable` and `prefer` becomes `require` (DBHub and the
/// CRD know only disable/require/verify-ca/verify-full; `prefer` is never silently plaintext).
pub fn parse_ssl(s: &str) -> Option<SslMode> {
    match s.trim().to_ascii_lowercase().as_str() {
        "disable" | "allow" => Some(SslMode::Disable),
        "require" | "prefer" => Some(SslMode::Require),
        other => other.parse().ok(),
    }
}

/// A validated input: the settings and the passwords given in this request, if any.
#[derive(Debug)]
pub struct Valid {
    /// The settings to store (and derive the CR spec from).
    pub settings: Settings,
    /// The password, when this request carries one.
    pub password: Option<String>,
    /// The read-only login's password, when this request carries one.
    pub readonly_password: Option<String>,
}

/// Validates `input` on its own (create) or over `base` (update: absent fields keep theirs).
pub fn validate(input: &DatabaseInput, base: Option<&Settings>) -> Result<Valid, Vec<FieldError>> {
    let mut errs = Vec::new();
    let name = text(&input.name, base.map(|b| &b.name));
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errs.push(FieldError::new(
            "name",
            "required, 1-100 characters, no control characters",
        ));
    }
    let engine = engine(input, base, &mut errs);
    let sqlite = engine == Some(DatabaseType::Sqlite);
    let (host, port, database) = endpoint(input, base, engine, &mut errs);
    let (username, password) = login(input, base, sqlite, &mut errs);
    let (readonly_username, readonly_password) = readonly_login(input, base, sqlite, &mut errs);
    let ssl_mode = tls(input, base, engine, &mut errs);
    let (max_rows, connection_timeout, query_timeout) = limits(input, base, &mut errs);
    let (description, labels) = annotations(input, base, &mut errs);
    let readonly = input
        .readonly
        .or(base.map(|b| b.readonly))
        .unwrap_or_else(defaults::readonly);
    let Some(engine) = engine.filter(|_| errs.is_empty()) else {
        return Err(errs);
    };
    Ok(Valid {
        settings: Settings {
            name,
            engine,
            host,
            port,
            database,
            username,
            has_password: password.is_some() || base.is_some_and(|b| b.has_password),
            has_readonly_password: !readonly_username.is_empty()
                && (readonly_password.is_some() || base.is_some_and(|b| b.has_readonly_password)),
            readonly_username,
            ssl_mode: if sqlite { None } else { ssl_mode },
            readonly,
            max_rows,
            connection_timeout,
            query_timeout,
            description,
            labels,
        },
        password,
        readonly_password,
    })
}

/// The optional read-only login: a user name with a password (given now or stored), or none.
fn readonly_login(
    input: &DatabaseInput,
    base: Option<&Settings>,
    sqlite: bool,
    errs: &mut Vec<FieldError>,
) -> (String, Option<String>) {
    let username = text(&input.readonly_username, base.map(|b| &b.readonly_username));
    let password = input.readonly_password.clone().filter(|p| !p.is_empty());
    if sqlite || username.is_empty() {
        if password.is_some() {
            errs.push(FieldError::new(
                "readonly_password",
                "needs a readonly_username",
            ));
        }
        return (String::new(), None);
    }
    if username.len() > 128 {
        errs.push(FieldError::new(
            "readonly_username",
            "at most 128 characters",
        ));
    }
    let stored = base.is_some_and(|b| b.has_readonly_password && b.readonly_username == username)
        || base.is_some_and(|b| b.has_readonly_password && input.readonly_username.is_none());
    if password.is_none() && !stored {
        errs.push(FieldError::new(
            "readonly_password",
            "required with a new readonly_username",
        ));
    }
    if password.as_ref().is_some_and(|p| p.len() > 1024) {
        errs.push(FieldError::new("readonly_password", "at most 1024 bytes"));
    }
    (username, password)
}

/// The given text, or the old value, trimmed.
fn text(v: &Option<String>, old: Option<&String>) -> String {
    v.clone()
        .or_else(|| old.cloned())
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn engine(
    input: &DatabaseInput,
    base: Option<&Settings>,
    errs: &mut Vec<FieldError>,
) -> Option<DatabaseType> {
    let type_text = match (&input.db_type, base) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(b)) => b.engine.to_string(),
        (None, None) => String::new(),
    };
    let ty = parse_type(&type_text);
    if ty.is_none() {
        errs.push(FieldError::new(
            "type",
            format!(
                "unsupported type {type_text:?}: supported are postgres (postgresql), mysql, mariadb, sqlserver (mssql) and sqlite"
            ),
        ));
    }
    ty
}

/// Host, port and database name (for sqlite: no host, port 0, the file path).
fn endpoint(
    input: &DatabaseInput,
    base: Option<&Settings>,
    ty: Option<DatabaseType>,
    errs: &mut Vec<FieldError>,
) -> (String, u16, String) {
    if ty == Some(DatabaseType::Sqlite) {
        let path = input
            .path
            .clone()
            .or_else(|| input.database.clone())
            .or_else(|| base.map(|b| b.database.clone()))
            .unwrap_or_default();
        if !path.starts_with('/') {
            errs.push(FieldError::new(
                "path",
                "an absolute file path is required for sqlite",
            ));
        }
        return (String::new(), 0, path);
    }
    let host = text(&input.host, base.map(|b| &b.host));
    if host.is_empty()
        || host.len() > 253
        || host.contains(|c: char| c.is_whitespace() || "/?#@".contains(c))
    {
        errs.push(FieldError::new(
            "host",
            "required for network databases: a host name or IP address",
        ));
    }
    let default_port = ty.and_then(|t| t.default_port()).map(i64::from);
    let port = match &input.port {
        None | Some(Value::Null) => base
            .map(|b| i64::from(b.port))
            .filter(|p| *p > 0)
            .or(default_port),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) if s.trim().is_empty() => default_port,
        Some(Value::String(s)) => s.trim().parse().ok().or(Some(-1)),
        Some(_) => Some(-1),
    };
    let port = match port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
        Some(p) => p,
        None => {
            errs.push(FieldError::new("port", "must be a number from 1 to 65535"));
            0
        }
    };
    let database = text(&input.database, base.map(|b| &b.database));
    if matches!(ty, Some(DatabaseType::Mysql | DatabaseType::Mariadb)) && database.is_empty() {
        errs.push(FieldError::new(
            "database",
            "required for mysql and mariadb",
        ));
    }
    if database.contains(['/', '?', '#']) {
        errs.push(FieldError::new(
            "database",
            "must not contain '/', '?' or '#'",
        ));
    }
    (host, port, database)
}

/// The user name and the password given in this request (sqlite has neither).
fn login(
    input: &DatabaseInput,
    base: Option<&Settings>,
    sqlite: bool,
    errs: &mut Vec<FieldError>,
) -> (String, Option<String>) {
    if sqlite {
        return (String::new(), None);
    }
    let username = text(&input.username, base.map(|b| &b.username));
    if username.is_empty() || username.len() > 128 {
        errs.push(FieldError::new(
            "username",
            "required for network databases (at most 128 characters)",
        ));
    }
    let password = input.password.clone().filter(|p| !p.is_empty());
    if password.is_none() && !base.is_some_and(|b| b.has_password) {
        errs.push(FieldError::new(
            "password",
            "required for network databases",
        ));
    }
    if password.as_ref().is_some_and(|p| p.len() > 1024) {
        errs.push(FieldError::new("password", "at most 1024 bytes"));
    }
    (username, password)
}

fn tls(
    input: &DatabaseInput,
    base: Option<&Settings>,
    ty: Option<DatabaseType>,
    errs: &mut Vec<FieldError>,
) -> Option<SslMode> {
    let ssl = match (&input.ssl_mode, base) {
        (Some(t), _) if t.trim().is_empty() => None,
        (Some(t), _) => {
            let parsed = parse_ssl(t);
            if parsed.is_none() {
                errs.push(FieldError::new(
                    "ssl_mode",
                    "one of disable, allow, prefer, require, verify-ca, verify-full",
                ));
            }
            parsed
        }
        (None, Some(b)) => b.ssl_mode,
        (None, None) => None,
    };
    if matches!(ssl, Some(SslMode::VerifyCa | SslMode::VerifyFull))
        && ty != Some(DatabaseType::Postgres)
    {
        errs.push(FieldError::new(
            "ssl_mode",
            "verify-ca and verify-full are supported for postgres only",
        ));
    }
    ssl
}

/// Row limit, connection timeout and query timeout.
fn limits(
    input: &DatabaseInput,
    base: Option<&Settings>,
    errs: &mut Vec<FieldError>,
) -> (u32, u32, u32) {
    let mut number = |field: &str, v: Option<i64>, old: Option<u32>, default: i32, max: u32| {
        let n = v.or(old.map(i64::from)).unwrap_or(i64::from(default));
        if !(1..=i64::from(max)).contains(&n) {
            errs.push(FieldError::new(
                field,
                format!("must be a whole number from 1 to {max}"),
            ));
        }
        n.clamp(1, i64::from(max)) as u32
    };
    (
        number(
            "max_rows",
            input.max_rows,
            base.map(|b| b.max_rows),
            defaults::max_rows(),
            100_000,
        ),
        number(
            "connection_timeout",
            input.connection_timeout,
            base.map(|b| b.connection_timeout),
            defaults::connection_timeout(),
            300,
        ),
        number(
            "query_timeout",
            input.query_timeout,
            base.map(|b| b.query_timeout),
            defaults::query_timeout(),
            3600,
        ),
    )
}

/// Description and labels.
fn annotations(
    input: &DatabaseInput,
    base: Option<&Settings>,
    errs: &mut Vec<FieldError>,
) -> (String, BTreeMap<String, String>) {
    let description = input
        .description
        .clone()
        .or_else(|| base.map(|b| b.description.clone()))
        .unwrap_or_default();
    if description.chars().count() > 1024 {
        errs.push(FieldError::new("description", "at most 1024 characters"));
    }
    let labels = input
        .labels
        .clone()
        .or_else(|| base.map(|b| b.labels.clone()))
        .unwrap_or_default();
    if labels.len() > 32
        || labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 63 || v.len() > 253)
    {
        errs.push(FieldError::new(
            "labels",
            "at most 32 labels; keys 1-63 characters, values at most 253",
        ));
    }
    (description, labels)
}
