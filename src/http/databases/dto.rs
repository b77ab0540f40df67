//! Request and response shapes of `/databases` (snake_case, as the Aether frontend sends and
//! reads them) and the validation that turns a request into a record + CR spec.

use std::collections::BTreeMap;

use dbhub_operator::crd::{DatabaseSpec, DatabaseType, SslMode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FieldError;
use crate::storage::databases::Record;

/// Create/update body. Unknown and read-only fields are ignored (the edit form echoes the whole
/// record back); on update a missing password keeps the old one.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct DatabaseInput {
    /// Display name (unique in the space).
    pub name: Option<String>,
    /// postgres|mysql|mariadb|sqlserver|sqlite (also postgresql, mssql).
    #[serde(rename = "type")]
    pub db_type: Option<String>,
    /// Server host.
    pub host: Option<String>,
    /// Server port (a number, or a string holding one).
    #[schema(value_type = Option<i64>)]
    pub port: Option<Value>,
    /// Database name.
    pub database: Option<String>,
    /// SQLite file path (instead of host/port/database).
    pub path: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password (write-only: never returned).
    #[schema(write_only)]
    pub password: Option<String>,
    /// disable|allow|prefer|require|verify-ca|verify-full.
    pub ssl_mode: Option<String>,
    /// Read-only policy (default true).
    pub readonly: Option<bool>,
    /// Row limit, 1-100000 (default 1000).
    pub max_rows: Option<i64>,
    /// Seconds, 1-300 (default 30).
    pub connection_timeout: Option<i64>,
    /// Seconds, 1-3600 (default 15).
    pub query_timeout: Option<i64>,
    /// Free text (at most 1024 characters).
    pub description: Option<String>,
    /// String labels (at most 32).
    pub labels: Option<BTreeMap<String, String>>,
}

/// The record as the API returns it. Never a password, DSN or token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DatabaseRecord {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Engine type.
    #[serde(rename = "type")]
    pub db_type: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: i64,
    /// Database name or SQLite path.
    pub database: String,
    /// User name.
    pub username: String,
    /// Whether a password is stored (in a Kubernetes Secret).
    pub has_password: bool,
    /// TLS mode.
    pub ssl_mode: String,
    /// Read-only policy.
    pub readonly: bool,
    /// Row limit.
    pub max_rows: i64,
    /// Seconds.
    pub connection_timeout: i64,
    /// Seconds.
    pub query_timeout: i64,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Pending|Connected|Failed|Degraded.
    pub status: String,
    /// Last check's message.
    pub status_message: String,
    /// Last check (RFC 3339) or null.
    pub last_checked: Option<String>,
    /// Space.
    pub space_id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Owner.
    pub owner_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Record> for DatabaseRecord {
    fn from(r: Record) -> Self {
        Self {
            labels: serde_json::from_str(&r.labels).unwrap_or_default(),
            last_checked: Some(r.last_checked).filter(|s| !s.is_empty()),
            id: r.id,
            name: r.name,
            db_type: r.db_type,
            host: r.host,
            port: r.port,
            database: r.database,
            username: r.username,
            has_password: r.has_password,
            ssl_mode: r.ssl_mode,
            readonly: r.readonly,
            max_rows: r.max_rows,
            connection_timeout: r.connection_timeout,
            query_timeout: r.query_timeout,
            description: r.description,
            status: r.status,
            status_message: r.status_message,
            space_id: r.space_id,
            tenant_id: r.tenant_id,
            owner_id: r.owner_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `{databases, total, page, page_size}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabaseList {
    /// This page.
    pub databases: Vec<DatabaseRecord>,
    /// All records in the space.
    pub total: i64,
    /// 1-based page.
    pub page: i64,
    /// Page size.
    pub page_size: i64,
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
        "" => None,
        "disable" | "allow" => Some(SslMode::Disable),
        "require" | "prefer" => Some(SslMode::Require),
        "verify-ca" => Some(SslMode::VerifyCa),
        "verify-full" => Some(SslMode::VerifyFull),
        _ => None,
    }
}

fn ssl_name(m: Option<SslMode>) -> &'static str {
    match m {
        None => "",
        Some(SslMode::Disable) => "disable",
        Some(SslMode::Require) => "require",
        Some(SslMode::VerifyCa) => "verify-ca",
        Some(SslMode::VerifyFull) => "verify-full",
    }
}

/// A validated input: the editable part of the record, the CR spec and the credentials.
#[derive(Debug)]
pub struct Valid {
    /// Record with the editable fields filled (ids, scope and times are the caller's job).
    pub record: Record,
    /// The Database CR's spec (credentialsRef filled in by the writer).
    pub spec: DatabaseSpec,
    /// Password given in this request, if any.
    pub password: Option<String>,
}

/// Validates `input` on its own (create) or over `base` (update: absent fields keep theirs).
pub fn validate(input: &DatabaseInput, base: Option<&Record>) -> Result<Valid, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut err = |f: &str, m: String| errs.push(FieldError::new(f, m));
    let text = |v: &Option<String>, old: Option<&String>| {
        v.clone()
            .or_else(|| old.cloned())
            .unwrap_or_default()
            .trim()
            .to_string()
    };

    let name = text(&input.name, base.map(|b| &b.name));
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        err(
            "name",
            "required, 1-100 characters, no control characters".into(),
        );
    }
    let type_text = text(&input.db_type, base.map(|b| &b.db_type));
    let ty = parse_type(&type_text);
    if ty.is_none() {
        err(
            "type",
            format!(
                "unsupported type {type_text:?}: supported are postgres (postgresql), mysql, mariadb, sqlserver (mssql) and sqlite"
            ),
        );
    }
    let sqlite = ty == Some(DatabaseType::Sqlite);
    let host = if sqlite {
        String::new()
    } else {
        text(&input.host, base.map(|b| &b.host))
    };
    if !sqlite
        && (host.is_empty()
            || host.len() > 253
            || host.contains(|c: char| c.is_whitespace() || "/?#@".contains(c)))
    {
        err(
            "host",
            "required for network databases: a host name or IP address".into(),
        );
    }
    let port = match &input.port {
        None | Some(Value::Null) => base
            .map(|b| b.port)
            .filter(|p| *p > 0)
            .or(ty.and_then(|t| t.default_port()).map(i64::from)),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) if s.trim().is_empty() => {
            ty.and_then(|t| t.default_port()).map(i64::from)
        }
        Some(Value::String(s)) => s.trim().parse().ok().or(Some(-1)),
        Some(_) => Some(-1),
    };
    if !sqlite && !port.is_some_and(|p| (1..=65535).contains(&p)) {
        err("port", "must be a number from 1 to 65535".into());
    }
    let database = if sqlite {
        input
            .path
            .clone()
            .or_else(|| input.database.clone())
            .or_else(|| base.map(|b| b.database.clone()))
            .unwrap_or_default()
    } else {
        text(&input.database, base.map(|b| &b.database))
    };
    if sqlite && !database.starts_with('/') {
        err(
            "path",
            "an absolute file path is required for sqlite".into(),
        );
    }
    if matches!(ty, Some(DatabaseType::Mysql | DatabaseType::Mariadb)) && database.is_empty() {
        err("database", "required for mysql and mariadb".into());
    }
    if !sqlite && database.contains(['/', '?', '#']) {
        err("database", "must not contain '/', '?' or '#'".into());
    }
    let username = if sqlite {
        String::new()
    } else {
        text(&input.username, base.map(|b| &b.username))
    };
    if !sqlite && (username.is_empty() || username.len() > 128) {
        err(
            "username",
            "required for network databases (at most 128 characters)".into(),
        );
    }
    let password = input.password.clone().filter(|p| !p.is_empty());
    let has_old_password = base.is_some_and(|b| b.has_password);
    if !sqlite && password.is_none() && !has_old_password {
        err("password", "required for network databases".into());
    }
    if password.as_ref().is_some_and(|p| p.len() > 1024) {
        err("password", "at most 1024 bytes".into());
    }
    let ssl_text = text(&input.ssl_mode, base.map(|b| &b.ssl_mode));
    let ssl = parse_ssl(&ssl_text);
    if !ssl_text.is_empty() && ssl.is_none() {
        err(
            "ssl_mode",
            "one of disable, allow, prefer, require, verify-ca, verify-full".into(),
        );
    }
    if matches!(ssl, Some(SslMode::VerifyCa | SslMode::VerifyFull))
        && ty != Some(DatabaseType::Postgres)
    {
        err(
            "ssl_mode",
            "verify-ca and verify-full are supported for postgres only".into(),
        );
    }
    let ssl = if sqlite { None } else { ssl };
    let num = |v: Option<i64>, old: Option<i64>, d: i64| v.or(old).unwrap_or(d);
    let max_rows = num(input.max_rows, base.map(|b| b.max_rows), 1000);
    if !(1..=100_000).contains(&max_rows) {
        err("max_rows", "must be from 1 to 100000".into());
    }
    let ct = num(
        input.connection_timeout,
        base.map(|b| b.connection_timeout),
        30,
    );
    if !(1..=300).contains(&ct) {
        err("connection_timeout", "seconds, from 1 to 300".into());
    }
    let qt = num(input.query_timeout, base.map(|b| b.query_timeout), 15);
    if !(1..=3600).contains(&qt) {
        err("query_timeout", "seconds, from 1 to 3600".into());
    }
    let description = input
        .description
        .clone()
        .or_else(|| base.map(|b| b.description.clone()))
        .unwrap_or_default();
    if description.chars().count() > 1024 {
        err("description", "at most 1024 characters".into());
    }
    let labels = match &input.labels {
        Some(l) => l.clone(),
        None => base
            .map(|b| serde_json::from_str(&b.labels).unwrap_or_default())
            .unwrap_or_default(),
    };
    if labels.len() > 32
        || labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 63 || v.len() > 253)
    {
        err(
            "labels",
            "at most 32 labels; keys 1-63 characters, values at most 253".into(),
        );
    }
    let readonly = input.readonly.or(base.map(|b| b.readonly)).unwrap_or(true);
    if !errs.is_empty() {
        return Err(errs);
    }
    let ty = ty.expect("validated");
    let port = if sqlite { 0 } else { port.unwrap_or_default() };
    let spec = DatabaseSpec {
        db_type: ty,
        host: (!sqlite).then(|| host.clone()),
        port: (!sqlite).then_some(port as i32),
        database: Some(database.clone()).filter(|d| !d.is_empty()),
        credentials_ref: None,
        connection_timeout: ct as i32,
        query_timeout: qt as i32,
        ssl_mode: ssl,
        readonly: Some(readonly),
        max_rows: Some(max_rows as i32),
        health_check_interval: 300,
        description: Some(description.clone()).filter(|d| !d.is_empty()),
    };
    let record = Record {
        id: String::new(),
        tenant_id: String::new(),
        space_id: String::new(),
        owner_id: String::new(),
        name,
        db_type: ty.as_str().into(),
        host,
        port,
        database,
        username,
        has_password: password.is_some() || has_old_password,
        ssl_mode: ssl_name(ssl).into(),
        readonly,
        max_rows,
        connection_timeout: ct,
        query_timeout: qt,
        description,
        labels: serde_json::to_string(&labels).expect("string map"),
        status: "Pending".into(),
        status_message: String::new(),
        last_checked: String::new(),
        cr_name: String::new(),
        created_at: String::new(),
        updated_at: String::new(),
    };
    Ok(Valid {
        record,
        spec,
        password,
    })
}
