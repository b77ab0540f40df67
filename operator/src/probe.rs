//! Connection checks: connect within the connection timeout, run a trivial query and read the
//! server version. sqlx for postgres, mysql, mariadb and sqlite; tiberius for sqlserver.
//! Driver errors are classified and cleaned here, so no DSN or password leaves this module.

use std::time::{Duration, Instant};

use sqlx::Connection;
use tokio_util::compat::TokioAsyncWriteCompatExt;

use crate::crd::{DatabaseSpec, DatabaseType, SslMode};
use crate::dsn::Credentials;

/// A successful check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// Version string the server reported.
    pub server_version: String,
    /// Connect + query time.
    pub latency: Duration,
    /// The TLS mode that connected (`allow` and `prefer` resolved); None when the spec names
    /// none (the driver's default) or for sqlite.
    pub ssl_mode: Option<SslMode>,
}

/// A failed check, with a message that is safe to show anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No connection within the connection timeout.
    #[error("no connection within {0}s")]
    Timeout(u64),
    /// The server could not be reached (refused, unknown host, reset).
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server refused the user name or password.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// The database does not exist (or the user may not open it).
    #[error("database not found: {0}")]
    DatabaseNotFound(String),
    /// TLS could not be negotiated.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The server is up but turned the connection away for now: too many connections, starting
    /// up or shutting down, out of resources.
    #[error("server busy: {0}")]
    Busy(String),
    /// Anything else the driver reported.
    #[error("check failed: {0}")]
    Other(String),
}

impl ProbeError {
    /// A machine-readable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "ConnectTimeout",
            Self::Unreachable(_) => "Unreachable",
            Self::AuthFailed(_) => "AuthenticationFailed",
            Self::DatabaseNotFound(_) => "DatabaseNotFound",
            Self::Tls(_) => "TLSFailed",
            Self::Busy(_) => "ServerBusy",
            Self::Other(_) => "CheckFailed",
        }
    }

    /// Retrying without a change to the spec or the Secret will not help: a user must fix the
    /// credentials, the database name or the TLS settings. Everything else (busy, unreachable,
    /// timed out, unknown) is transient and retried with backoff.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::AuthFailed(_) | Self::DatabaseNotFound(_) | Self::Tls(_)
        )
    }
}

/// The modes to try, in order, for `mode`: libpq's `prefer` tries TLS then plaintext, `allow`
/// plaintext then TLS; the others are tried as they are.
fn attempts(mode: Option<SslMode>) -> Vec<Option<SslMode>> {
    match mode {
        Some(SslMode::Prefer) => vec![Some(SslMode::Require), Some(SslMode::Disable)],
        Some(SslMode::Allow) => vec![Some(SslMode::Disable), Some(SslMode::Require)],
        other => vec![other],
    }
}

/// Whether the next attempt may still connect after `e`: `prefer` falls back to plaintext only
/// when TLS could not be negotiated; `allow` tries TLS after any refusal of plaintext by a
/// server that answered.
fn worth_next(requested: Option<SslMode>, e: &ProbeError) -> bool {
    match requested {
        Some(SslMode::Prefer) => matches!(e, ProbeError::Tls(_)),
        Some(SslMode::Allow) => !matches!(e, ProbeError::Timeout(_) | ProbeError::Unreachable(_)),
        _ => false,
    }
}

/// Checks the database once (for `allow`/`prefer`, up to two connections). `creds` is
/// required for every type but sqlite.
pub async fn probe(spec: &DatabaseSpec, creds: Option<&Credentials>) -> Result<Probed, ProbeError> {
    let timeout = Duration::from_secs(spec.connection_timeout.max(1) as u64);
    let secrets = creds.map(Credentials::secrets).unwrap_or_default();
    let started = Instant::now();
    let try_all = async {
        let mut last = ProbeError::Other("no attempt".into());
        for mode in attempts(spec.ssl_mode) {
            let attempt = DatabaseSpec {
                ssl_mode: mode,
                ..spec.clone()
            };
            match connect_and_query(&attempt, creds).await {
                Ok(version) => return Ok((version, mode)),
                Err(e) if worth_next(spec.ssl_mode, &e) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    };
    let result = tokio::time::timeout(timeout, try_all)
        .await
        .map_err(|_| ProbeError::Timeout(timeout.as_secs()))
        .and_then(|r| r.map_err(|e| e.cleaned(&secrets)));
    crate::metrics::probe(
        &spec.db_type.to_string(),
        result.is_ok(),
        started.elapsed().as_secs_f64(),
    );
    let (version, ssl_mode) = result?;
    Ok(Probed {
        server_version: version,
        latency: started.elapsed(),
        ssl_mode: ssl_mode.filter(|_| spec.db_type != DatabaseType::Sqlite),
    })
}

async fn connect_and_query(
    spec: &DatabaseSpec,
    creds: Option<&Credentials>,
) -> Result<String, ProbeError> {
    let missing = || ProbeError::Other("no credentials".into());
    let host = spec.host.clone().unwrap_or_default();
    let port = spec
        .port
        .or(spec.db_type.default_port())
        .unwrap_or_default() as u16;
    let database = spec.database.clone().unwrap_or_default();
    match spec.db_type {
        DatabaseType::Postgres => {
            let c = creds.ok_or_else(missing)?;
            let mode = match spec.ssl_mode {
                None | Some(SslMode::Prefer) => sqlx::postgres::PgSslMode::Prefer,
                Some(SslMode::Allow) => sqlx::postgres::PgSslMode::Allow,
                Some(SslMode::Disable) => sqlx::postgres::PgSslMode::Disable,
                Some(SslMode::Require) => sqlx::postgres::PgSslMode::Require,
                Some(SslMode::VerifyCa) => sqlx::postgres::PgSslMode::VerifyCa,
                Some(SslMode::VerifyFull) => sqlx::postgres::PgSslMode::VerifyFull,
            };
            let mut opts = sqlx::postgres::PgConnectOptions::new()
                .host(&host)
                .port(port)
                .username(&c.user)
                .password(&c.password)
                .ssl_mode(mode)
                .application_name("dbhub-operator");
            if !database.is_empty() {
                opts = opts.database(&database);
            }
            let mut conn = sqlx::PgConnection::connect_with(&opts)
                .await
                .map_err(classify)?;
            let (v,): (String,) = sqlx::query_as("SELECT version()")
                .fetch_one(&mut conn)
                .await
                .map_err(classify)?;
            let _ = conn.close().await;
            Ok(v)
        }
        DatabaseType::Mysql | DatabaseType::Mariadb => {
            let c = creds.ok_or_else(missing)?;
            let mode = match spec.ssl_mode {
                None | Some(SslMode::Prefer | SslMode::Allow) => {
                    sqlx::mysql::MySqlSslMode::Preferred
                }
                Some(SslMode::Disable) => sqlx::mysql::MySqlSslMode::Disabled,
                Some(_) => sqlx::mysql::MySqlSslMode::Required,
            };
            let opts = sqlx::mysql::MySqlConnectOptions::new()
                .host(&host)
                .port(port)
                .username(&c.user)
                .password(&c.password)
                .database(&database)
                .ssl_mode(mode);
            let mut conn = sqlx::MySqlConnection::connect_with(&opts)
                .await
                .map_err(classify)?;
            let (v,): (String,) = sqlx::query_as("SELECT VERSION()")
                .fetch_one(&mut conn)
                .await
                .map_err(classify)?;
            let _ = conn.close().await;
            Ok(v)
        }
        DatabaseType::Sqlite => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&database)
                .read_only(true)
                .create_if_missing(false);
            let mut conn = sqlx::SqliteConnection::connect_with(&opts)
                .await
                .map_err(classify_sqlite)?;
            let (v,): (String,) = sqlx::query_as("SELECT sqlite_version()")
                .fetch_one(&mut conn)
                .await
                .map_err(classify_sqlite)?;
            let _ = conn.close().await;
            Ok(format!("SQLite {v}"))
        }
        DatabaseType::Sqlserver => {
            sqlserver(spec, &host, port, &database, creds.ok_or_else(missing)?).await
        }
    }
}

async fn sqlserver(
    spec: &DatabaseSpec,
    host: &str,
    port: u16,
    database: &str,
    c: &Credentials,
) -> Result<String, ProbeError> {
    let mut config = tiberius::Config::new();
    config.host(host);
    config.port(port);
    if !database.is_empty() {
        config.database(database);
    }
    config.authentication(tiberius::AuthMethod::sql_server(&c.user, &c.password));
    config.application_name("dbhub-operator");
    match spec.ssl_mode {
        Some(SslMode::Disable | SslMode::Allow) => {
            config.encryption(tiberius::EncryptionLevel::NotSupported)
        }
        // DBHub's `require` encrypts without verifying the certificate; check the same way.
        _ => {
            config.encryption(tiberius::EncryptionLevel::Required);
            config.trust_cert();
        }
    }
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| io_error(&e))?;
    tcp.set_nodelay(true).ok();
    let mut client = tiberius::Client::connect(config, tcp.compat_write())
        .await
        .map_err(classify_tds)?;
    let row = client
        .simple_query("SELECT @@VERSION")
        .await
        .map_err(classify_tds)?
        .into_row()
        .await
        .map_err(classify_tds)?;
    let version = row
        .and_then(|r| r.get::<&str, _>(0).map(str::to_owned))
        .unwrap_or_default();
    Ok(version
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

fn io_error(e: &std::io::Error) -> ProbeError {
    ProbeError::Unreachable(e.kind().to_string())
}

fn classify(e: sqlx::Error) -> ProbeError {
    match &e {
        sqlx::Error::Io(io) => io_error(io),
        sqlx::Error::Tls(t) => ProbeError::Tls(t.to_string()),
        sqlx::Error::Database(db) => {
            let msg = db.message().to_string();
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return mysql_error(my.number(), msg);
            }
            postgres_error(db.code().as_deref().unwrap_or_default(), msg)
        }
        _ => ProbeError::Other(e.to_string()),
    }
}

/// A MySQL/MariaDB server error at connect time, by error number.
fn mysql_error(number: u16, msg: String) -> ProbeError {
    match number {
        // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR.
        1045 | 1044 | 1698 => ProbeError::AuthFailed(msg),
        // ER_BAD_DB_ERROR.
        1049 => ProbeError::DatabaseNotFound(msg),
        // ER_CON_COUNT_ERROR (too many connections), ER_TOO_MANY_USER_CONNECTIONS,
        // ER_USER_LIMIT_REACHED, ER_CANT_CREATE_THREAD, ER_OUTOFMEMORY, ER_OUT_OF_SORTMEMORY,
        // ER_OUT_OF_RESOURCES, ER_SERVER_SHUTDOWN, ER_SERVER_OFFLINE_MODE (MySQL 3032).
        1040 | 1203 | 1226 | 1135 | 1037 | 1038 | 1041 | 1053 | 3032 => ProbeError::Busy(msg),
        _ => ProbeError::Other(msg),
    }
}

/// A PostgreSQL server error at connect time, by SQLSTATE.
fn postgres_error(code: &str, msg: String) -> ProbeError {
    match code {
        // invalid_password, invalid_authorization_specification.
        "28P01" | "28000" => ProbeError::AuthFailed(msg),
        // invalid_catalog_name.
        "3D000" => ProbeError::DatabaseNotFound(msg),
        // Class 53 insufficient_resources (53300 too_many_connections, 53100 disk_full, …);
        // cannot_connect_now (starting up, recovering), admin_shutdown, crash_shutdown; class
        // 08 connection_exception.
        c if c.starts_with("53") || c.starts_with("08") => ProbeError::Busy(msg),
        "57P01" | "57P02" | "57P03" => ProbeError::Busy(msg),
        _ => ProbeError::Other(msg),
    }
}

fn classify_sqlite(e: sqlx::Error) -> ProbeError {
    match e {
        sqlx::Error::Database(db) => ProbeError::DatabaseNotFound(db.message().to_string()),
        other => classify(other),
    }
}

fn classify_tds(e: tiberius::error::Error) -> ProbeError {
    match &e {
        tiberius::error::Error::Io { kind, .. } => ProbeError::Unreachable(kind.to_string()),
        tiberius::error::Error::Tls(m) => ProbeError::Tls(m.clone()),
        // 18456: login failed.
        tiberius::error::Error::Server(t) if t.code() == 18456 => {
            ProbeError::AuthFailed(t.message().to_string())
        }
        // 4060: cannot open database.
        tiberius::error::Error::Server(t) if t.code() == 4060 => {
            ProbeError::DatabaseNotFound(t.message().to_string())
        }
        tiberius::error::Error::Server(t) if sqlserver_busy(t.code()) => {
            ProbeError::Busy(t.message().to_string())
        }
        _ => ProbeError::Other(e.to_string()),
    }
}

/// SQL Server errors that mean "not now": 17809 the user connection limit is reached, 17142
/// the server is paused, 18401 single-user or script-upgrade mode, 10928/10929 resource
/// limits, 40501 service busy, 40613 database unavailable (Azure SQL).
fn sqlserver_busy(code: u32) -> bool {
    matches!(code, 17809 | 17142 | 18401 | 10928 | 10929 | 40501 | 40613)
}

impl ProbeError {
    /// Removes every secret (raw or percent-encoded), anything shaped like a URL with
    /// credentials, and caps the length.
    fn cleaned(self, secrets: &[String]) -> Self {
        let f = |m: String| crate::redact::clean(&m, secrets, 300);
        match self {
            Self::Timeout(s) => Self::Timeout(s),
            Self::Unreachable(m) => Self::Unreachable(f(m)),
            Self::AuthFailed(m) => Self::AuthFailed(f(m)),
            Self::DatabaseNotFound(m) => Self::DatabaseNotFound(f(m)),
            Self::Tls(m) => Self::Tls(f(m)),
            Self::Busy(m) => Self::Busy(f(m)),
            Self::Other(m) => Self::Other(f(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_prefer_try_both_modes_in_libpq_order() {
        use SslMode::*;
        assert_eq!(attempts(Some(Prefer)), [Some(Require), Some(Disable)]);
        assert_eq!(attempts(Some(Allow)), [Some(Disable), Some(Require)]);
        assert_eq!(attempts(Some(VerifyFull)), [Some(VerifyFull)]);
        let tls = ProbeError::Tls("server does not support TLS".into());
        let auth = ProbeError::AuthFailed("no pg_hba.conf entry".into());
        assert!(worth_next(Some(Prefer), &tls) && !worth_next(Some(Prefer), &auth));
        assert!(
            worth_next(Some(Allow), &auth) && !worth_next(Some(Allow), &ProbeError::Timeout(3))
        );
        assert!(!worth_next(Some(Require), &tls));
    }

    #[test]
    fn permanence_follows_the_cause() {
        assert!(ProbeError::AuthFailed("x".into()).is_permanent());
        assert!(ProbeError::DatabaseNotFound("x".into()).is_permanent());
        assert!(ProbeError::Tls("server does not support TLS".into()).is_permanent());
        assert!(!ProbeError::Timeout(3).is_permanent());
        assert!(!ProbeError::Unreachable("refused".into()).is_permanent());
        assert!(!ProbeError::Busy("too many clients".into()).is_permanent());
        assert!(!ProbeError::Other("unexpected".into()).is_permanent());
    }

    #[test]
    fn busy_servers_are_transient_per_engine_and_code() {
        let m = || String::from("m");
        for code in [
            "53300", "53000", "53100", "53200", "53400", "57P03", "57P01", "57P02", "08006",
            "08001",
        ] {
            assert_eq!(postgres_error(code, m()), ProbeError::Busy(m()), "{code}");
        }
        for code in ["28P01", "28000"] {
            assert_eq!(
                postgres_error(code, m()),
                ProbeError::AuthFailed(m()),
                "{code}"
            );
        }
        assert_eq!(
            postgres_error("3D000", m()),
            ProbeError::DatabaseNotFound(m())
        );
        assert_eq!(postgres_error("42601", m()), ProbeError::Other(m()));
        for n in [1040, 1203, 1226, 1135, 1037, 1038, 1041, 1053, 3032] {
            assert_eq!(mysql_error(n, m()), ProbeError::Busy(m()), "{n}");
        }
        for n in [1045, 1044, 1698] {
            assert_eq!(mysql_error(n, m()), ProbeError::AuthFailed(m()), "{n}");
        }
        assert_eq!(mysql_error(1049, m()), ProbeError::DatabaseNotFound(m()));
        assert_eq!(mysql_error(1064, m()), ProbeError::Other(m()));
        for n in [17809, 17142, 18401, 10928, 10929, 40501, 40613] {
            assert!(sqlserver_busy(n), "{n}");
        }
        assert!(!sqlserver_busy(18456) && !sqlserver_busy(4060));
        for e in [postgres_error("53300", m()), mysql_error(1040, m())] {
            assert!(!e.is_permanent());
            assert_eq!(e.reason(), "ServerBusy");
        }
    }

    #[tokio::test]
    async fn sqlserver_unreachable_host_fails_fast_and_clean() {
        // No SQL Server can be had on these machines: this checks the tiberius path up to the
        // TCP connect against a loopback port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec: DatabaseSpec = serde_json::from_value(serde_json::json!({
            "type": "sqlserver", "host": "127.0.0.1", "port": port, "database": "d",
            "credentialsRef": {"name": "s"}, "connectionTimeout": 5
        }))
        .unwrap();
        let creds = Credentials {
            user: "sa".into(),
            password: "Pa55/w@rd".into(),
        };
        let err = probe(&spec, Some(&creds)).await.unwrap_err();
        assert!(matches!(err, ProbeError::Unreachable(_)), "{err:?}");
        assert!(!err.to_string().contains("Pa55"), "{err}");
    }

    #[tokio::test]
    async fn sqlite_probe_reads_the_version_of_a_real_file() {
        let dir = std::env::temp_dir().join(format!("probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        sqlx::SqliteConnection::connect_with(&opts)
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        let spec: DatabaseSpec = serde_json::from_value(serde_json::json!({
            "type": "sqlite", "database": path.to_str().unwrap()
        }))
        .unwrap();
        let ok = probe(&spec, None).await.unwrap();
        assert!(ok.server_version.starts_with("SQLite 3."), "{ok:?}");
        let missing: DatabaseSpec = serde_json::from_value(
            serde_json::json!({"type": "sqlite", "database": "/nonexistent/x.db"}),
        )
        .unwrap();
        assert!(matches!(
            probe(&missing, None).await,
            Err(ProbeError::DatabaseNotFound(_))
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
