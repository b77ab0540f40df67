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
/// old one. Every field that changes a connection's security is honoured: `ssl_mode`, and the
/// forms' `ssl` (MySQL/MariaDB) and `encrypt` + `trust_server_certificate` (SQL Server).
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
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
    /// `disable`, `allow` (plaintext, TLS if the server insists), `prefer` (TLS when the server
    /// offers it, plaintext otherwise: the default of the Aether form), `require`, `verify-ca` or
    /// `verify-full` (verify-* for postgres only). `allow` and `prefer` are resolved at each
    /// check; the record's `effective_ssl_mode` says which mode is in effect.
    pub ssl_mode: Option<String>,
    /// The PostgreSQL form's name for `ssl_mode`; when both are sent this one wins (the other
    /// may be an echo of the record).
    #[serde(rename = "sslMode")]
    pub ssl_mode_form: Option<String>,
    /// MySQL/MariaDB form's "Use SSL": true is `ssl_mode` require, false disable (it decides
    /// when given).
    pub ssl: Option<bool>,
    /// SQL Server form's "Encrypt Connection": true is `ssl_mode` require, false disable (it
    /// decides when given).
    pub encrypt: Option<bool>,
    /// SQL Server form's "Trust Server Certificate". DBHub 1.4 cannot verify SQL Server
    /// certificates, so an encrypted connection needs this true (false is refused, never
    /// silently ignored).
    pub trust_server_certificate: Option<bool>,
    /// The form's name for `trust_server_certificate`; wins when both are sent.
    #[serde(rename = "trustServerCertificate")]
    pub trust_server_certificate_form: Option<bool>,
    /// Only reads may run (default true).
    pub readonly: Option<bool>,
    /// SQLite form's "Mode": `ro` makes the database read-only (as `readonly: true`; with
    /// `readonly: false` it is refused), `rw` and `rwc` leave `readonly` as given; `memory` is
    /// refused (DBHub needs a file).
    pub mode: Option<String>,
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

/// The connection form's "Test" body, in the frontend's camelCase and type ids (snake_case is
/// accepted too: the edit form sends the echoed record, and where both spellings arrive the
/// form's camelCase one wins). With the `id` (or `connection_id`) of a record of the caller's
/// space and no password, the stored credentials are used — the same permission as
/// `POST /databases/{id}/test`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestInput {
    /// A registered database whose stored credentials to use when no password is given.
    pub id: Option<String>,
    /// Same as `id` (what the edit form echoes).
    #[serde(rename = "connection_id", alias = "connectionId")]
    pub connection_id: Option<String>,
    /// `postgresql`, `mysql`, `mariadb`, `sqlserver`/`mssql` or `sqlite` (this API's ids work too).
    #[serde(alias = "database_type")]
    pub database_type: Option<String>,
    /// Same as `databaseType` (this API's field name).
    #[serde(rename = "type")]
    pub db_type: Option<String>,
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
    /// TLS mode, as for `ssl_mode` of a record.
    pub ssl_mode: Option<String>,
    /// Same as `sslMode` (the record's echo; `sslMode` wins).
    #[serde(rename = "ssl_mode")]
    pub ssl_mode_echo: Option<String>,
    /// MySQL/MariaDB "Use SSL".
    pub ssl: Option<bool>,
    /// SQL Server "Encrypt Connection".
    pub encrypt: Option<bool>,
    /// SQL Server "Trust Server Certificate".
    pub trust_server_certificate: Option<bool>,
    /// Same as `trustServerCertificate` (which wins).
    #[serde(rename = "trust_server_certificate")]
    pub trust_server_certificate_echo: Option<bool>,
}

/// Seconds a check started from the API may take at most.
pub const CHECK_TIMEOUT_SECS: i64 = 10;

impl TestInput {
    /// The same connection as a create body (nothing is saved).
    pub fn as_database_input(&self) -> DatabaseInput {
        DatabaseInput {
            name: Some("connection test".into()),
            db_type: self.database_type.clone().or_else(|| self.db_type.clone()),
            host: self.host.clone(),
            port: self.port.clone(),
            database: self.database.clone(),
            path: self.path.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            ssl_mode: self.ssl_mode.clone().or_else(|| self.ssl_mode_echo.clone()),
            ssl: self.ssl,
            encrypt: self.encrypt,
            trust_server_certificate: self
                .trust_server_certificate
                .or(self.trust_server_certificate_echo),
            connection_timeout: Some(CHECK_TIMEOUT_SECS),
            ..Default::default()
        }
    }
}

impl TestInput {
    /// The registered database named, if any.
    pub fn record_id(&self) -> Option<&str> {
        [&self.id, &self.connection_id]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
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

/// Parses an SSL mode (case-insensitive).
pub fn parse_ssl(s: &str) -> Option<SslMode> {
    s.trim().to_ascii_lowercase().parse().ok()
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
    // Stored passwords are only ever sent to the server they were given for: moving the
    // record to another host, port or engine needs them again.
    let kept = base.filter(|b| Some(b.engine) == engine && b.host == host && b.port == port);
    let (username, password) = login(input, base, kept, sqlite, &mut errs);
    let (readonly_username, readonly_password) =
        readonly_login(input, base, kept, sqlite, &mut errs);
    let ssl_mode = tls(input, base, engine, &mut errs);
    let (max_rows, connection_timeout, query_timeout) = limits(input, base, &mut errs);
    let (description, labels) = annotations(input, base, &mut errs);
    let readonly = sqlite_mode(input, sqlite, &mut errs)
        .or(input.readonly)
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
            has_password: password.is_some() || kept.is_some_and(|b| b.has_password),
            has_readonly_password: !readonly_username.is_empty()
                && (readonly_password.is_some() || kept.is_some_and(|b| b.has_readonly_password)),
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

/// The SQLite form's mode: `Some(true)` when it makes the database read-only.
fn sqlite_mode(input: &DatabaseInput, sqlite: bool, errs: &mut Vec<FieldError>) -> Option<bool> {
    let mode = input
        .mode
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())?;
    match (sqlite, mode.to_ascii_lowercase().as_str()) {
        (false, _) => {
            errs.push(FieldError::new("mode", "only for sqlite"));
            None
        }
        (true, "rw" | "rwc") => None,
        (true, "ro") if input.readonly == Some(false) => {
            errs.push(FieldError::new(
                "mode",
                "ro contradicts readonly false: drop one of them",
            ));
            None
        }
        (true, "ro") => Some(true),
        (true, "memory") => {
            errs.push(FieldError::new(
                "mode",
                "memory is not supported: give the path of a database file",
            ));
            None
        }
        (true, _) => {
            errs.push(FieldError::new("mode", "one of ro, rw, rwc"));
            None
        }
    }
}

/// The optional read-only login: a user name with a password (given now or stored), or none.
fn readonly_login(
    input: &DatabaseInput,
    base: Option<&Settings>,
    kept: Option<&Settings>,
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
    } else if password.is_none() && kept.is_none() {
        errs.push(FieldError::new("readonly_password", MOVED));
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
/// Why a stored password cannot be kept.
const MOVED: &str = "required again: the host, port or type changed, and a stored password is only sent to the server it was given for";

fn login(
    input: &DatabaseInput,
    base: Option<&Settings>,
    kept: Option<&Settings>,
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
    } else if password.is_none() && kept.is_none_or(|b| !b.has_password) {
        errs.push(FieldError::new("password", MOVED));
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
    let on_off = |on: bool| {
        Some(if on {
            SslMode::Require
        } else {
            SslMode::Disable
        })
    };
    // The forms' own switches decide when they are sent (the edit form echoes ssl_mode too).
    match (ty, input.ssl, input.encrypt) {
        (Some(DatabaseType::Mysql | DatabaseType::Mariadb), Some(on), _) => return on_off(on),
        (Some(DatabaseType::Sqlserver), _, Some(on)) => {
            let trust = input
                .trust_server_certificate_form
                .or(input.trust_server_certificate);
            if on && trust == Some(false) {
                errs.push(FieldError::new(
                    "trust_server_certificate",
                    "DBHub 1.4 cannot verify SQL Server certificates: set it to true for an encrypted connection whose certificate is not verified, or turn encrypt off",
                ));
            }
            return on_off(on);
        }
        _ => {}
    }
    let ssl = match (
        input.ssl_mode_form.as_ref().or(input.ssl_mode.as_ref()),
        base,
    ) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid(body: Value) -> Result<Valid, Vec<FieldError>> {
        validate(&serde_json::from_value(body).unwrap(), None)
    }

    fn fields(body: Value) -> Vec<String> {
        valid(body)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    /// What the Aether form sends for a new PostgreSQL connection after its snake_case
    /// conversion (the defaults of `databaseTypes.js`).
    fn pg_form() -> Value {
        json!({"name": "pg", "type": "postgres", "host": "db.example", "port": 5432,
               "database": "app", "username": "u", "password": "p", "ssl_mode": "prefer"})
    }

    #[test]
    fn prefer_and_allow_are_kept_as_given_not_hardened_or_weakened() {
        for mode in ["prefer", "allow", "PREFER"] {
            let mut body = pg_form();
            body["ssl_mode"] = json!(mode);
            let v = valid(body).unwrap();
            assert_eq!(
                v.settings.ssl_mode,
                parse_ssl(&mode.to_lowercase()),
                "{mode}"
            );
        }
        let mut camel = pg_form();
        camel.as_object_mut().unwrap().remove("ssl_mode");
        camel["sslMode"] = json!("require");
        assert_eq!(
            valid(camel).unwrap().settings.ssl_mode,
            Some(SslMode::Require)
        );
    }

    #[test]
    fn mysql_use_ssl_toggle_decides_over_an_echoed_ssl_mode() {
        let body = |ssl: bool| {
            json!({"name": "m", "type": "mysql", "host": "h", "database": "d", "username": "u",
                   "password": "p", "ssl": ssl, "ssl_mode": "require"})
        };
        assert_eq!(
            valid(body(true)).unwrap().settings.ssl_mode,
            Some(SslMode::Require)
        );
        assert_eq!(
            valid(body(false)).unwrap().settings.ssl_mode,
            Some(SslMode::Disable)
        );
        assert_eq!(valid(body(true)).unwrap().settings.port, 3306);
    }

    #[test]
    fn sqlserver_encrypt_is_honoured_and_an_unverifiable_certificate_refused() {
        let body = |encrypt: bool, trust: bool| {
            json!({"name": "s", "type": "sqlserver", "host": "h", "database": "d", "username": "u",
                   "password": "p", "encrypt": encrypt, "trust_server_certificate": trust})
        };
        assert_eq!(
            valid(body(true, true)).unwrap().settings.ssl_mode,
            Some(SslMode::Require)
        );
        assert_eq!(
            valid(body(false, false)).unwrap().settings.ssl_mode,
            Some(SslMode::Disable)
        );
        // The form's defaults: encrypt on, certificate not trusted. DBHub cannot verify it, so
        // this is an error naming the field, never a silent downgrade.
        assert_eq!(fields(body(true, false)), ["trust_server_certificate"]);
    }

    #[test]
    fn sqlite_mode_ro_makes_it_read_only_and_memory_is_refused() {
        let body = |extra: Value| {
            let mut b =
                json!({"name": "l", "type": "sqlite", "path": "/data/x.db", "readonly": false});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        assert!(
            !valid(body(json!({"mode": "rwc"})))
                .unwrap()
                .settings
                .readonly
        );
        let ro = valid(body(json!({"mode": "ro", "readonly": null}))).unwrap();
        assert!(ro.settings.readonly);
        assert_eq!(fields(body(json!({"mode": "ro"}))), ["mode"]);
        assert_eq!(fields(body(json!({"mode": "memory"}))), ["mode"]);
        assert_eq!(fields(body(json!({"mode": "wx"}))), ["mode"]);
        let mut pg = pg_form();
        pg["mode"] = json!("ro");
        assert_eq!(fields(pg), ["mode"]);
    }

    #[test]
    fn a_stored_password_never_follows_the_record_to_another_server() {
        let mut with_ro = pg_form();
        with_ro["readonly_username"] = json!("ro");
        with_ro["readonly_password"] = json!("rp");
        let base = valid(with_ro).unwrap().settings;
        let edit = |extra: Value| {
            let input: DatabaseInput = serde_json::from_value(extra).unwrap();
            validate(&input, Some(&base))
        };
        // The edit form echoes everything but passwords: same server, both are kept.
        let same = edit(json!({"host": "db.example", "port": 5432, "name": "renamed"})).unwrap();
        assert!(same.settings.has_password && same.settings.has_readonly_password);
        for moved in [
            json!({"host": "evil.example"}),
            json!({"port": 5433}),
            json!({"type": "mysql", "database": "d"}),
        ] {
            let errs = edit(moved.clone()).unwrap_err();
            let named: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(named, ["password", "readonly_password"], "{moved}");
            assert!(errs[0].message.contains("only sent to the server"));
        }
        let fresh = edit(json!({"host": "new.example", "password": "n", "readonly_password": "r"}))
            .unwrap();
        assert_eq!(fresh.password.as_deref(), Some("n"));
    }

    #[test]
    fn ports_as_the_form_sends_them() {
        for (port, want) in [
            (json!("5433"), Some(5433)),
            (json!(""), Some(5432)),
            (json!(null), Some(5432)),
        ] {
            let mut b = pg_form();
            b["port"] = port.clone();
            assert_eq!(valid(b).ok().map(|v| v.settings.port), want, "{port}");
        }
        for port in [json!("x"), json!(0), json!(70000), json!(true)] {
            let mut b = pg_form();
            b["port"] = port.clone();
            assert_eq!(fields(b), ["port"], "{port}");
        }
    }

    #[test]
    fn the_test_body_of_the_edit_form_is_understood() {
        // `{databaseType, ...params}`: the echoed record in its own field names, no password.
        let t: TestInput = serde_json::from_value(json!({
            "databaseType": "postgresql", "connection_id": "abc", "host": "h", "port": 5432,
            "database": "d", "username": "u", "ssl_mode": "prefer", "sslMode": "disable",
            "has_password": true, "status": "Connected"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.record_id(), Some("abc"));
        assert_eq!(t.database_type.as_deref(), Some("postgresql"));
        let input = t.as_database_input();
        assert_eq!(input.db_type.as_deref(), Some("postgresql"));
        assert_eq!(
            input.ssl_mode.as_deref(),
            Some("disable"),
            "the form's sslMode wins"
        );
        assert_eq!(input.password, None);
    }
}
