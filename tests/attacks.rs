//! The attacker's view of issue 13, against the real PostgreSQL and MariaDB through the API and
//! a real DBHub: every bypass that was seen, one case each — refused by the service, or failing
//! inside the database — and the data, sequences, locks and sessions checked unchanged after
//! each attempt through the test's own admin connection.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::support::api::{self, Call, org_space, person};
use crate::support::dbhub::serve_instance;
use crate::support::scenario::{cr_of, pg_body, query, register, setup, wait_served};
use crate::support::{stack, unique};

struct Pg {
    admin: sqlx::PgConnection,
    table: String,
}

impl Pg {
    /// A table of five rows, a sequence, a function that deletes the rows, and a login that may
    /// only SELECT them.
    async fn prepare() -> (Self, String) {
        let table = unique("atk").replace('-', "_");
        let ro_password = "r0-only p@ss/word";
        let mut app = sqlx::PgConnection::connect(stack().get("STACK_PG_URL"))
            .await
            .unwrap();
        for s in [
            format!("CREATE TABLE {table} (n int)"),
            format!("INSERT INTO {table} SELECT generate_series(1, 5)"),
            format!("CREATE SEQUENCE {table}_seq"),
            format!(
                "CREATE FUNCTION {table}_wipe() RETURNS bigint LANGUAGE sql AS \
                 $$ WITH gone AS (DELETE FROM {table} RETURNING 1) SELECT count(*) FROM gone $$"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(s))
                .execute(&mut app)
                .await
                .unwrap();
        }
        let mut admin = sqlx::PgConnection::connect(&crate::support::pg_admin_db_url())
            .await
            .unwrap();
        for s in [
            "CREATE EXTENSION IF NOT EXISTS dblink".to_string(),
            format!("CREATE ROLE {table}_ro LOGIN PASSWORD '{ro_password}'"),
            format!("GRANT SELECT ON {table} TO {table}_ro"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(s))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        (Self { admin, table }, ro_password.to_string())
    }

    async fn scalar(&mut self, sql: &str) -> i64 {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut self.admin)
            .await
            .unwrap()
            .get::<i64, _>(0)
    }

    /// Rows left, the sequence's last value, advisory locks held, large objects.
    async fn state(&mut self) -> (i64, i64, i64, i64) {
        let t = self.table.clone();
        (
            self.scalar(&format!("SELECT count(*) FROM {t}")).await,
            self.scalar(&format!("SELECT last_value FROM {t}_seq"))
                .await,
            self.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
                .await,
            self.scalar("SELECT count(*) FROM pg_largeobject_metadata")
                .await,
        )
    }
}

/// The outcome a case must have.
#[derive(Debug)]
enum Expect {
    /// Refused before DBHub with this status and Aether code.
    Refused(u16, &'static str),
    /// Run, and failing inside the database (its error comes back, 422 or 403).
    FailsInDatabase,
}

fn check(what: &str, (code, body): &(u16, Value), expect: &Expect) {
    match expect {
        Expect::Refused(status, c) => {
            assert_eq!(
                (code, body["code"].as_str()),
                (status, Some(*c)),
                "{what}: {body}"
            );
        }
        Expect::FailsInDatabase => {
            assert!([403, 422].contains(code), "{what}: {code} {body}");
        }
    }
}

#[tokio::test]
async fn attacks_on_postgres_are_refused_or_fail_inside_the_database() {
    let (ns, _ctl, server, port) = setup("atkpg").await;
    let (mut pg, ro_password) = Pg::prepare().await;
    let t = pg.table.clone();
    let graph = api::graph();
    let (owner, member, viewer) = (
        person(&graph).await,
        person(&graph).await,
        person(&graph).await,
    );
    let (space, _) = org_space(
        &graph,
        &[(&owner, "admin"), (&member, "member"), (&viewer, "viewer")],
    )
    .await;
    let as_ = |p: &api::Person| Call {
        api: &server,
        token: api::token(&p.sub),
        space_type: "organization",
        space_id: space.clone(),
    };
    let (admin_call, member_call, viewer_call) = (as_(&owner), as_(&member), as_(&viewer));
    let rw = register(
        &admin_call,
        pg_body("writable", json!({"readonly": false, "query_timeout": 3})),
    )
    .await;
    let ro = register(
        &admin_call,
        pg_body("readonly", json!({"readonly": true, "query_timeout": 3})),
    )
    .await;
    let graded = register(
        &admin_call,
        pg_body(
            "writable-with-ro-login",
            json!({"readonly": false, "readonly_username": format!("{t}_ro"), "readonly_password": ro_password}),
        ),
    )
    .await;
    let instance = format!("dbhub-{space}");
    wait_served(&ns, &instance, &[cr_of(&rw), cr_of(&ro), cr_of(&graded)]).await;
    let _hub = serve_instance(&ns, &instance, port).await;
    let before = pg.state().await;
    assert_eq!(before.0, 5);

    // A session of the same database user that an attacker would like to kill.
    let mut victim = sqlx::PgConnection::connect(stack().get("STACK_PG_URL"))
        .await
        .unwrap();
    let victim_pid: i32 = sqlx::query("SELECT pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .unwrap()
        .get(0);
    let dblink = format!(
        "SELECT dblink_exec('host=127.0.0.1 port={} dbname={} user={} password=x', 'DELETE FROM {t}')",
        stack().get("STACK_PG_PORT"),
        stack().get("STACK_DB_NAME"),
        stack().get("STACK_DB_USER")
    );
    let forbidden = Expect::Refused(403, "FORBIDDEN");
    let cases: Vec<(&str, &Call, &str, String, Expect)> = vec![
        (
            "viewer wipe() on writable",
            &viewer_call,
            &rw,
            format!("SELECT {t}_wipe()"),
            Expect::FailsInDatabase,
        ),
        (
            "viewer setval on writable",
            &viewer_call,
            &rw,
            format!("SELECT setval('{t}_seq', 4242)"),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "viewer nextval on writable",
            &viewer_call,
            &rw,
            format!("SELECT nextval('{t}_seq')"),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "member wipe() misclassified on the read path",
            &member_call,
            &rw,
            format!("SELECT {t}_wipe()"),
            Expect::FailsInDatabase,
        ),
        (
            "dblink_exec on read-only",
            &member_call,
            &ro,
            dblink.clone(),
            forbidden,
        ),
        (
            "dblink_exec, quoted name",
            &member_call,
            &rw,
            dblink.replace("dblink_exec", "\"DBLINK_EXEC\""),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "pg_terminate_backend",
            &member_call,
            &ro,
            format!("SELECT pg_terminate_backend({victim_pid})"),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "pg_cancel_backend",
            &member_call,
            &rw,
            format!("SELECT pg_catalog.pg_cancel_backend({victim_pid})"),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "lo_create",
            &member_call,
            &ro,
            "SELECT lo_create(0)".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "pg_read_file",
            &member_call,
            &ro,
            "SELECT pg_read_file('/etc/passwd')".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "pg_ls_dir in FROM",
            &member_call,
            &ro,
            "SELECT * FROM pg_ls_dir('/')".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "COPY TO a file",
            &member_call,
            &rw,
            format!("COPY {t} TO '/tmp/{t}.out'"),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "COPY FROM PROGRAM",
            &member_call,
            &rw,
            format!("COPY {t} FROM PROGRAM 'id'"),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "set_config session-wide",
            &member_call,
            &ro,
            "SELECT set_config('statement_timeout', '0', false)".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "SET without LOCAL",
            &member_call,
            &rw,
            "SET application_name = 'pwned'".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "SET ROLE",
            &member_call,
            &rw,
            "SET ROLE postgres".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "RESET ALL",
            &member_call,
            &rw,
            "RESET ALL".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "advisory lock",
            &member_call,
            &ro,
            "SELECT pg_advisory_lock(4242)".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "LISTEN",
            &member_call,
            &rw,
            "LISTEN pwned".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "PREPARE",
            &member_call,
            &rw,
            "PREPARE p AS SELECT 1".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "temporary table",
            &member_call,
            &rw,
            "CREATE TEMP TABLE pwned (a int)".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
        (
            "read-only login refuses wipe() by grants",
            &viewer_call,
            &graded,
            format!("SELECT {t}_wipe()"),
            Expect::FailsInDatabase,
        ),
        (
            "explicit write by a viewer",
            &viewer_call,
            &rw,
            "SELECT 1".into(),
            Expect::Refused(403, "FORBIDDEN"),
        ),
    ];
    for (what, call, db, sql, expect) in &cases {
        let mut body = json!({"query": sql});
        if *what == "explicit write by a viewer" {
            body["mode"] = json!("write");
        }
        let answer = query(call, db, body).await;
        check(what, &answer, expect);
        assert!(
            !answer.1.to_string().contains(stack().hostile_password()),
            "{what}: the password came back"
        );
        assert_eq!(pg.state().await, before, "{what}: something changed");
        let alive: i64 = pg
            .scalar(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = {victim_pid}"
            ))
            .await;
        assert_eq!(alive, 1, "{what}: the other session was killed");
    }
    // Reads of the graded database run as its read-only login, which the database's own grants
    // keep from writing (shown here outside any read-only transaction, as that login).
    let (code, who) = query(
        &viewer_call,
        &graded,
        json!({"query": "SELECT current_user AS who"}),
    )
    .await;
    assert_eq!(
        (code, who["rows"][0]["who"].as_str()),
        (200, Some(format!("{t}_ro").as_str())),
        "{who}"
    );
    let ro_url = format!(
        "postgres://{t}_ro:{}@127.0.0.1:{}/{}",
        dbhub_operator::dsn::encode(&ro_password),
        stack().get("STACK_PG_PORT"),
        stack().get("STACK_DB_NAME")
    );
    let mut as_ro = sqlx::PgConnection::connect(&ro_url).await.unwrap();
    let denied = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {t}_wipe()")))
        .execute(&mut as_ro)
        .await
        .unwrap_err()
        .to_string();
    assert!(denied.contains("permission denied"), "{denied}");
    assert_eq!(pg.state().await, before);

    // Nothing of a refused session change reached later requests: defaults still apply, and
    // the query timeout (3 s) still cancels a long sleep.
    let (code, settings) = query(
        &viewer_call,
        &ro,
        json!({"query": "SELECT current_setting('application_name') AS app, current_setting('statement_timeout') AS timeout"}),
    )
    .await;
    assert_eq!(code, 200, "{settings}");
    assert_ne!(settings["rows"][0]["app"], "pwned", "{settings}");
    assert_ne!(settings["rows"][0]["timeout"], "0", "{settings}");
    let started = Instant::now();
    let (code, slept) = query(&viewer_call, &ro, json!({"query": "SELECT pg_sleep(8)"})).await;
    assert!(
        code >= 400 && started.elapsed() < Duration::from_secs(7),
        "{code} after {:?}: {slept}",
        started.elapsed()
    );

    // Reads DBHub's own check used to refuse, now sent as SELECTs.
    let (code, values) = query(&viewer_call, &ro, json!({"query": "VALUES (1), (2)"})).await;
    assert_eq!(
        (code, values["row_count"].as_i64()),
        (200, Some(2)),
        "{values}"
    );
    let (code, table) = query(&viewer_call, &ro, json!({"query": format!("TABLE {t}")})).await;
    assert_eq!(
        (code, table["row_count"].as_i64()),
        (200, Some(5)),
        "{table}"
    );

    // A member's explicit write runs on the writable source — and really writes.
    let (code, wiped) = query(
        &member_call,
        &rw,
        json!({"query": format!("SELECT {t}_wipe() AS gone"), "mode": "write"}),
    )
    .await;
    assert_eq!(
        (code, &wiped["rows"][0]["gone"]),
        (200, &json!("5")),
        "{wiped}"
    );
    assert_eq!(pg.state().await.0, 0);
    let (code, _) = query(
        &member_call,
        &rw,
        json!({"query": format!("INSERT INTO {t} SELECT generate_series(1, 5)")}),
    )
    .await;
    assert_eq!(code, 200, "a classified write by a member runs too");
    assert_eq!(pg.state().await.0, 5);
    drop(victim);
}

#[tokio::test]
async fn attacks_on_mariadb_are_refused_and_leave_no_session_state() {
    let (ns, _ctl, server, port) = setup("atkmy").await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = crate::support::api::personal(&server, &owner);
    let s = stack();
    let body = json!({"name": "maria", "type": "mariadb", "host": s.get("STACK_MARIADB_HOST"),
        "port": s.get("STACK_MARIADB_PORT"), "database": s.get("STACK_DB_NAME"),
        "username": s.get("STACK_DB_USER"), "password": s.hostile_password(), "readonly": false});
    let id = register(&call, body).await;
    let instance = format!("dbhub-{}", owner.space);
    wait_served(&ns, &instance, &[cr_of(&id)]).await;
    let _hub = serve_instance(&ns, &instance, port).await;
    for sql in [
        "SELECT `LOAD_FILE`('/etc/passwd')",
        "SELECT load_file('/etc/passwd') AS f",
        "SELECT @v := 1",
        "SET @v = 1",
        "SET SESSION sql_mode = ''",
        "SET NAMES latin1",
        "SELECT GET_LOCK('pwned', 1)",
        "SELECT 1 INTO @v",
    ] {
        let (code, body) = query(&call, &id, json!({"query": sql})).await;
        assert_eq!(
            (code, body["code"].as_str()),
            (403, Some("FORBIDDEN")),
            "{sql}: {body}"
        );
    }
    let (code, after) = query(
        &call,
        &id,
        json!({"query": "SELECT @v AS v, IS_FREE_LOCK('pwned') AS free, @@character_set_client AS cs"}),
    )
    .await;
    assert_eq!(code, 200, "{after}");
    let row = &after["rows"][0];
    assert!(
        row["v"].is_null() && row["free"] == 1 && row["cs"] != "latin1",
        "{after}"
    );
}

#[tokio::test]
async fn a_wrong_read_only_login_fails_the_database_and_says_which_login() {
    let (_ns, _ctl, server, _port) = setup("atkro").await;
    let (_pg, _) = Pg::prepare().await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = crate::support::api::personal(&server, &owner);
    let (code, created) = call
        .send(
            "POST",
            "/api/v1/databases",
            Some(pg_body(
                "badro",
                json!({"readonly_username": "no_such_ro_user", "readonly_password": "nope"}),
            )),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let failed = crate::support::api::wait_status(&call, id, "Failed").await;
    assert!(
        failed["status_message"]
            .as_str()
            .unwrap()
            .contains("read-only login"),
        "{failed}"
    );
    assert!(failed.get("readonly_password").is_none());
}
