use proptest::prelude::*;

use super::*;

fn spec(ty: &str, extra: serde_json::Value) -> DatabaseSpec {
    let mut v = serde_json::json!({"type": ty});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: password.into(),
    }
}

const HOSTILE: &str = "p@ss:w/rd?#%&=+\" \\$";

#[test]
fn postgres_dsn_has_sslmode_and_encoded_password() {
    let s = spec(
        "postgres",
        serde_json::json!({"host": "db.ns.svc", "database": "app", "sslMode": "verify-full"}),
    );
    let dsn = build(&s, Some(&creds("bob", HOSTILE))).unwrap();
    assert_eq!(
        dsn.expose(),
        "postgres://bob:p%40ss%3Aw%2Frd%3F%23%25%26%3D%2B%22%20%5C%24@db.ns.svc:5432/app?sslmode=verify-full"
    );
}

#[test]
fn mysql_and_mariadb_use_their_scheme_default_port_and_require() {
    for ty in ["mysql", "mariadb"] {
        let s = spec(
            ty,
            serde_json::json!({"host": "h", "database": "d", "sslMode": "require"}),
        );
        assert_eq!(
            build(&s, Some(&creds("u", "p"))).unwrap().expose(),
            format!("{ty}://u:p@h:3306/d?sslmode=require")
        );
    }
}

#[test]
fn mysql_without_database_is_refused() {
    let s = spec("mysql", serde_json::json!({"host": "h"}));
    assert_eq!(
        build(&s, Some(&creds("u", "p"))),
        Err(DsnError::MissingDatabase("mysql"))
    );
}

#[test]
fn verify_modes_outside_postgres_degrade_to_require_not_to_plaintext() {
    let s = spec(
        "mariadb",
        serde_json::json!({"host": "h", "database": "d", "sslMode": "verify-ca"}),
    );
    assert!(
        build(&s, Some(&creds("u", "p")))
            .unwrap()
            .expose()
            .ends_with("?sslmode=require")
    );
}

#[test]
fn sqlserver_puts_database_in_the_path() {
    let s = spec(
        "sqlserver",
        serde_json::json!({"host": "mssql", "port": 14330, "database": "reports"}),
    );
    assert_eq!(
        build(&s, Some(&creds("sa", "x/y"))).unwrap().expose(),
        "sqlserver://sa:x%2Fy@mssql:14330/reports"
    );
}

#[test]
fn sqlite_is_a_triple_slash_path_without_credentials() {
    let s = spec("sqlite", serde_json::json!({"database": "/data/app.db"}));
    assert_eq!(build(&s, None).unwrap().expose(), "sqlite:///data/app.db");
}

#[test]
fn network_types_need_host_and_credentials() {
    let s = spec("postgres", serde_json::json!({"database": "d"}));
    assert_eq!(
        build(&s, Some(&creds("u", "p"))),
        Err(DsnError::MissingHost("postgres"))
    );
    let s = spec("postgres", serde_json::json!({"host": "h"}));
    assert_eq!(
        build(&s, None),
        Err(DsnError::MissingCredentials("postgres"))
    );
}

#[test]
fn database_names_dbhub_would_split_are_refused() {
    let s = spec(
        "postgres",
        serde_json::json!({"host": "h", "database": "a?b"}),
    );
    assert_eq!(
        build(&s, Some(&creds("u", "p"))),
        Err(DsnError::BadDatabaseName("postgres"))
    );
}

#[test]
fn ipv6_hosts_are_bracketed() {
    let s = spec(
        "postgres",
        serde_json::json!({"host": "::1", "database": "d"}),
    );
    assert_eq!(
        build(&s, Some(&creds("u", "p"))).unwrap().expose(),
        "postgres://u:p@[::1]:5432/d"
    );
}

#[test]
fn debug_output_hides_password_and_dsn() {
    let c = creds("u", HOSTILE);
    let s = spec("postgres", serde_json::json!({"host": "h"}));
    let dsn = build(&s, Some(&c)).unwrap();
    for shown in [format!("{c:?}"), format!("{dsn:?}")] {
        assert!(
            !shown.contains("p@ss") && !shown.contains("p%40ss"),
            "{shown}"
        );
    }
    assert_eq!(c.secrets(), vec![HOSTILE.to_string(), encode(HOSTILE)]);
}

/// DBHub's own split rules: query at the first `?`, path at the first `/` after the scheme,
/// userinfo at the last `@`, password at the first `:` of the userinfo.
fn dbhub_split(dsn: &str) -> (String, String, String, u16, String) {
    let rest = dsn.split_once("://").unwrap().1;
    let rest = rest.split_once('?').map_or(rest, |(a, _)| a);
    let (authority, db) = rest.split_once('/').unwrap();
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap();
    let (user, pass) = userinfo.split_once(':').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .unwrap()
            .into_owned()
    };
    (
        dec(user),
        dec(pass),
        host.to_string(),
        port.parse().unwrap(),
        db.to_string(),
    )
}

fn punctuation_heavy() -> impl Strategy<Value = String> {
    let ascii_punct: Vec<char> = (0x20u8..0x7f)
        .map(char::from)
        .filter(|c| !c.is_ascii_alphanumeric())
        .collect();
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(proptest::sample::select(ascii_punct), 0..40)
            .prop_map(|v| v.into_iter().collect()),
    ]
}

proptest! {
    #[test]
    fn any_credentials_parse_back_exactly(
        user in "[a-zA-Z0-9_@:/?#%. -]{1,20}",
        password in punctuation_heavy(),
        ty in proptest::sample::select(vec!["postgres", "mysql", "mariadb", "sqlserver"]),
        port in 1i32..=65535,
    ) {
        let s = spec(ty, serde_json::json!({"host": "db.example", "port": port, "database": "app_db"}));
        let dsn = build(&s, Some(&creds(&user, &password))).unwrap();

        let (u, p, h, po, d) = dbhub_split(dsn.expose());
        prop_assert_eq!((&u, &p, h.as_str(), po, d.as_str()), (&user, &password, "db.example", port as u16, "app_db"));

        let url = url::Url::parse(dsn.expose()).unwrap();
        let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned();
        prop_assert_eq!(dec(url.username()), user);
        prop_assert_eq!(dec(url.password().unwrap_or_default()), password);
        prop_assert_eq!(url.host_str(), Some("db.example"));
        prop_assert_eq!(url.port(), Some(port as u16));
        prop_assert_eq!(url.path(), "/app_db");
    }
}
