//! The `Database` custom resource: one database connection that the operator checks and that
//! DBHubInstances can select. Its schema (with CEL cross-field rules) is generated from here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::defaults;

/// A database connection, registered once and shared by the DBHub instances that select it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbhub.tas.io",
    version = "v1alpha1",
    kind = "Database",
    namespaced,
    status = "DatabaseStatus",
    shortname = "db",
    category = "dbhub-all",
    derive = "PartialEq",
    doc = "A database connection checked by the operator and served through DBHub",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.host"),
    printcolumn(name = "Database", type_ = "string", json_path = ".spec.database"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.type == 'sqlite' || (has(self.host) && self.host != '')")
        .message("spec.host is required for type postgres, mysql, mariadb and sqlserver")
        .field_path(".host"),
    validation = Rule::new("self.type != 'sqlite' || !has(self.host)")
        .message("spec.host must not be set for type sqlite: put the file path in spec.database")
        .field_path(".host"),
    validation = Rule::new("self.type != 'sqlite' || !has(self.port)")
        .message("spec.port must not be set for type sqlite")
        .field_path(".port"),
    validation = Rule::new("self.type != 'sqlite' || (has(self.database) && self.database.startsWith('/'))")
        .message("spec.database must be an absolute file path (starting with /) for type sqlite")
        .field_path(".database"),
    validation = Rule::new("!(self.type in ['mysql', 'mariadb']) || (has(self.database) && self.database != '')")
        .message("spec.database is required for type mysql and mariadb (DBHub needs it in the DSN)")
        .field_path(".database"),
    validation = Rule::new("self.type == 'sqlite' || has(self.credentialsRef)")
        .message("spec.credentialsRef is required for type postgres, mysql, mariadb and sqlserver")
        .field_path(".credentialsRef"),
    validation = Rule::new("!has(self.sslMode) || !(self.sslMode in ['verify-ca', 'verify-full']) || self.type == 'postgres'")
        .message("spec.sslMode verify-ca and verify-full are supported for type postgres only; use disable, allow, prefer or require")
        .field_path(".sslMode"),
    validation = Rule::new("self.type != 'sqlite' || !has(self.sslMode)")
        .message("spec.sslMode must not be set for type sqlite")
        .field_path(".sslMode")
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Database engine: postgres, mysql, mariadb, sqlserver or sqlite.
    #[serde(rename = "type")]
    pub db_type: DatabaseType,

    /// Server host name or IP address (required for every type but sqlite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,

    /// Server port, 1-65535. Defaults by type: postgres 5432, mysql/mariadb 3306, sqlserver 1433.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Database name; for sqlite, the absolute path of the database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub database: Option<String>,

    /// The Secret holding the user name and password (not used for sqlite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,

    /// Seconds to wait for a connection, 1-300.
    #[serde(default = "defaults::connection_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub connection_timeout: i32,

    /// Seconds a query may run before DBHub cancels it, 1-3600 (ignored for sqlite).
    #[serde(default = "defaults::query_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub query_timeout: i32,

    /// TLS mode: disable, require, verify-ca or verify-full (verify-* for postgres only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,

    /// Only read statements may run. Overrides the DBHubInstance's defaultPolicy when set
    /// (an explicit false is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,

    /// Most rows one query returns, 1-100000. Overrides the DBHubInstance's defaultPolicy when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_rows: Option<i32>,

    /// Seconds between connection checks, 10-86400.
    #[serde(default = "defaults::health_check_interval")]
    #[schemars(range(min = 10, max = 86400))]
    pub health_check_interval: i32,

    /// Free text shown to people and to DBHub clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

/// A database engine the operator can check and DBHub can serve.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseType {
    /// PostgreSQL.
    Postgres,
    /// MySQL.
    Mysql,
    /// MariaDB.
    Mariadb,
    /// Microsoft SQL Server.
    Sqlserver,
    /// SQLite (a file on the DBHub pod's file system).
    Sqlite,
}

impl DatabaseType {
    /// The name used in specs and DSN schemes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Mariadb => "mariadb",
            Self::Sqlserver => "sqlserver",
            Self::Sqlite => "sqlite",
        }
    }

    /// The port a server of this type listens on unless told otherwise (none for sqlite).
    pub fn default_port(self) -> Option<i32> {
        match self {
            Self::Postgres => Some(5432),
            Self::Mysql | Self::Mariadb => Some(3306),
            Self::Sqlserver => Some(1433),
            Self::Sqlite => None,
        }
    }
}

/// Display and parse a CRD enum by its serde name (the text in specs, the graph and the API).
macro_rules! text_form {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(s)) => f.write_str(&s),
                    _ => Err(std::fmt::Error),
                }
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                serde_json::from_value(serde_json::Value::String(s.into()))
                    .map_err(|_| format!("{s:?} is not a valid {}", stringify!($t)))
            }
        }
    };
}

text_form!(DatabaseType);
text_form!(SslMode);
text_form!(DatabasePhase);

/// TLS mode for the connection. `allow` and `prefer` mean what they mean in libpq and are
/// resolved at each check (the mode in effect is `status.effectiveSslMode`, which is what DBHub
/// is configured with); the others are passed to DBHub as they are.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// Plaintext, or TLS when the server refuses plaintext.
    Allow,
    /// TLS when the server offers it, plaintext otherwise.
    Prefer,
    /// TLS without certificate verification.
    Require,
    /// TLS, verifying the server certificate's CA (postgres only).
    VerifyCa,
    /// TLS, verifying the CA and the host name (postgres only).
    VerifyFull,
}

/// Where the user name and password live.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.readonlyUserKey) == has(self.readonlyPasswordKey)")
        .message("credentialsRef.readonlyUserKey and readonlyPasswordKey go together: set both or neither")
)]
pub struct CredentialsRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret (default: the Database's). Another namespace is honoured only when
    /// that Secret's annotation `dbhub.tas.io/allowed-namespaces` lists this Database's namespace or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Key of the user name in the Secret's data.
    #[serde(default = "defaults::user_key")]
    #[schemars(length(min = 1, max = 253))]
    pub user_key: String,
    /// Key of the password in the Secret's data.
    #[serde(default = "defaults::password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: String,
    /// Key of a read-only user's name in the same Secret. When given (with
    /// readonlyPasswordKey), DBHub's read-only source logs in as that user, so the database's
    /// own grants keep reads read-only; the operator checks both logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub readonly_user_key: Option<String>,
    /// Key of the read-only user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub readonly_password_key: Option<String>,
}

/// What the operator last saw of the database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Pending (not connected yet: not checked, or failing for a passing cause such as a busy
    /// server), Connected, Degraded (failing for a passing cause after an earlier success) or
    /// Failed (a cause a user must fix: credentials, database name, TLS, a refused reference or
    /// host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DatabasePhase>,
    /// When the connection was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// Human-readable outcome of the last check; never contains a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Version string the server reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Milliseconds the last successful check took (connect + query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// The TLS mode in effect after the last successful check (`allow` and `prefer` resolved
    /// to `disable` or `require`); DBHub connects with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_ssl_mode: Option<SslMode>,
    /// The spec generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `resourceVersion` of the credentials Secret at a recent successful check (refreshed with
    /// lastChecked): after a restart the operator re-checks at once only when it (or the spec)
    /// changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_version: Option<String>,
    /// Standard conditions; `Ready` is True when the last check connected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Lifecycle phase of a Database.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DatabasePhase {
    /// Not checked yet.
    Pending,
    /// The last check connected.
    Connected,
    /// The last check failed after an earlier success; retried sooner.
    Degraded,
    /// A permanent problem (credentials, reference) or repeated failure.
    Failed,
}
