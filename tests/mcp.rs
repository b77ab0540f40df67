//! The MCP client (src/mcp) against a real DBHub serving the stack's PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use aether_dbhub::mcp::{McpError, Session};

use crate::support::dbhub::DbHub;
use crate::support::{stack, unique};

const T: Duration = Duration::from_secs(15);

async fn readonly_pg_hub(token: &str) -> DbHub {
    let dir = std::env::temp_dir().join(unique("mcp"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = toml::toml! {
        [[sources]]
        id = "pg"
        dsn = "${DSN_PG}"
        lazy = true
        [[tools]]
        name = "execute_sql"
        source = "pg"
        readonly = true
        max_rows = 2
        [[tools]]
        name = "search_objects"
        source = "pg"
    };
    let path = dir.join("dbhub.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let env = BTreeMap::from([
        (
            "DSN_PG".to_string(),
            format!("{}?sslmode=disable", stack().get("STACK_PG_URL")),
        ),
        ("DBHUB_AUTH_TOKEN".to_string(), token.to_string()),
    ]);
    DbHub::start(&path, &env).await
}

/// A session on a DBHub of its own, to share between tasks (the DBHub stops when dropped).
async fn shared_session() -> (DbHub, std::sync::Arc<Session>) {
    let token = unique("tok");
    let hub = readonly_pg_hub(&token).await;
    let s = Session::connect(&hub.url(), &token, T).await.unwrap();
    (hub, std::sync::Arc::new(s))
}

#[tokio::test]
async fn mcp_session_runs_sql_and_maps_every_failure() {
    crate::support::logs::capture();
    let token = unique("tok");
    let hub = readonly_pg_hub(&token).await;
    let s = Session::connect(&hub.url(), &token, T)
        .await
        .expect("session");
    let tools = s.tool_names().await.unwrap();
    assert!(tools.contains(&"execute_sql".to_string()), "{tools:?}");

    let r = s
        .execute_sql("execute_sql", "SELECT 3 AS c, 1 AS a, 2 AS b")
        .await
        .unwrap();
    assert_eq!(
        r.statements[0].columns(),
        ["c", "a", "b"],
        "column order kept"
    );
    assert_eq!(r.statements[0].rows[0]["c"], 3);

    let many = s
        .execute_sql("execute_sql", "SELECT g FROM generate_series(1, 5) AS g")
        .await
        .unwrap();
    assert_eq!(many.statements[0].rows.len(), 2);
    assert!(many.statements[0].truncated, "max_rows cut the result");

    let ro = s
        .execute_sql("execute_sql", "INSERT INTO nowhere VALUES (1)")
        .await
        .unwrap_err();
    assert!(
        matches!(&ro, McpError::Tool { code, .. } if code == "READONLY_VIOLATION"),
        "{ro:?}"
    );
    let bad = s
        .execute_sql("execute_sql", "SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, McpError::Tool { code, message } if code == "EXECUTION_ERROR" && message.contains("no_such_table")),
        "{bad:?}"
    );
    let unknown = s
        .execute_sql("execute_sql_nope", "SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(unknown, McpError::UnknownTool("execute_sql_nope".into()));

    match Session::connect(&hub.url(), "wrong-token", T).await {
        Err(McpError::Unavailable(m)) => assert_eq!(
            m,
            "DBHub refused the token",
            "{}",
            crate::support::logs::text()
                .lines()
                .filter(|l| l.contains("unclassified"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        Err(e) => panic!("wrong token: {e:?}"),
        Ok(s) => {
            // Stateless servers may accept `initialize` lazily: the first call must fail then.
            let e = s.tool_names().await.unwrap_err();
            assert!(
                matches!(&e, McpError::Unavailable(m) if m == "DBHub refused the token"),
                "{e:?}"
            );
        }
    }
    let url = hub.url();
    drop(hub);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down = Session::connect(&url, &token, T)
        .await
        .err()
        .expect("DBHub stopped");
    assert!(matches!(&down, McpError::Unavailable(_)), "{down:?}");
}

/// TCP sockets to 127.0.0.1:`port` in this network namespace (the port is this test's DBHub's
/// alone), by state (from /proc/net/tcp: TIME_WAIT is 06, ESTABLISHED 01).
fn sockets_to(port: u16) -> Vec<String> {
    let remote = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&remote.as_str())).then(|| f[3].to_string())
        })
        .collect()
}

/// One session takes concurrent calls over kept-alive connections: 200 calls, 16 at a time,
/// open at most 16 connections (a client that reconnected per call would leave ~200 sockets
/// in TIME_WAIT), and every call gets its own answer.
#[tokio::test]
async fn mcp_session_reuses_connections_under_concurrent_calls() {
    let (hub, s) = shared_session().await;
    let before = sockets_to(hub.port).len();
    let mut calls = tokio::task::JoinSet::new();
    for w in 0..16 {
        let s = s.clone();
        calls.spawn(async move {
            for i in 0..13 {
                let n = w * 100 + i;
                let r = s
                    .execute_sql("execute_sql", &format!("SELECT {n} AS n"))
                    .await
                    .unwrap();
                assert_eq!(r.statements[0].rows[0]["n"], n, "the answer to this call");
            }
        });
    }
    calls.join_all().await;
    let after = sockets_to(hub.port);
    assert!(
        after.len() <= before + 16,
        "{} sockets to DBHub after 208 calls (before: {before}): {after:?}",
        after.len()
    );
}

/// `SELECT pg_sleep(s)`, on its own task; the order of completion goes to `done`.
fn slow(
    s: &std::sync::Arc<Session>,
    seconds: u32,
    label: &'static str,
    done: &std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
) -> tokio::task::JoinHandle<()> {
    let (s, done) = (s.clone(), done.clone());
    tokio::spawn(async move {
        s.execute_sql("execute_sql", &format!("SELECT pg_sleep({seconds})"))
            .await
            .unwrap();
        done.lock().unwrap().push(label);
    })
}

/// Two `pg_sleep(seconds)` calls, which take the session's two turns (its requests out), so
/// that calls made next queue and go out as a batch.
async fn both_turns_taken(
    s: &std::sync::Arc<Session>,
    seconds: u32,
    done: &std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
) -> [tokio::task::JoinHandle<()>; 2] {
    let long = [
        slow(s, seconds, "long", done),
        slow(s, seconds, "long", done),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    long
}

/// Calls made while the session's requests are all out go to DBHub together, as one JSON-RPC
/// batch, and each still gets its own answer: 64 callers at once, each reading back its own
/// number, and the session sent some of them in batches.
#[tokio::test]
async fn mcp_session_batches_calls_made_while_dbhub_is_busy_each_gets_its_own_answer() {
    let (_hub, s) = shared_session().await;
    assert_eq!(s.batched_calls(), 0);
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..64 {
        let s = s.clone();
        calls.spawn(async move {
            let r = s
                .execute_sql(
                    "execute_sql",
                    &format!("SELECT {n} AS n, 'call {n}' AS who"),
                )
                .await
                .unwrap();
            assert_eq!(r.statements[0].rows[0]["n"], n, "the answer to this call");
            assert_eq!(r.statements[0].rows[0]["who"], format!("call {n}"));
        });
    }
    calls.join_all().await;
    assert!(
        s.batched_calls() > 0,
        "64 calls at once were all sent one by one"
    );
}

/// A batch's answers reach their callers as DBHub finishes each call: with both of the
/// session's requests out on long queries, a third long query and ten quick ones queue and go
/// out together (the queue waits a few milliseconds at most for a turn); every quick one is
/// answered while all three long ones still run. Errors stay with their own call: a write on
/// the read-only tool and a failing statement in the same batch leave the others' answers alone.
#[tokio::test]
async fn mcp_batch_answers_each_call_when_it_finishes_and_keeps_errors_to_their_own_call() {
    let (_hub, s) = shared_session().await;
    let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let long = both_turns_taken(&s, 3, &done).await;
    let third = slow(&s, 3, "long", &done);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut quick = tokio::task::JoinSet::new();
    for n in 0..10 {
        let (s, done) = (s.clone(), done.clone());
        quick.spawn(async move {
            let r = s
                .execute_sql("execute_sql", &format!("SELECT {n} AS n"))
                .await;
            done.lock().unwrap().push("quick");
            (n, r)
        });
    }
    let ro = {
        let s = s.clone();
        tokio::spawn(async move { s.execute_sql("execute_sql", "DELETE FROM pg_class").await })
    };
    let bad = {
        let s = s.clone();
        tokio::spawn(async move {
            s.execute_sql("execute_sql", "SELECT * FROM no_such_table")
                .await
        })
    };
    for (n, r) in quick.join_all().await {
        assert_eq!(r.unwrap().statements[0].rows[0]["n"], n);
    }
    assert!(
        matches!(ro.await.unwrap(), Err(McpError::Tool { code, .. }) if code == "READONLY_VIOLATION")
    );
    assert!(
        matches!(bad.await.unwrap(), Err(McpError::Tool { code, message }) if code == "EXECUTION_ERROR" && message.contains("no_such_table"))
    );
    assert!(
        s.batched_calls() >= 11,
        "the queued calls went out in batches ({} batched)",
        s.batched_calls()
    );
    for l in long {
        l.await.unwrap();
    }
    third.await.unwrap();
    let order = done.lock().unwrap().clone();
    assert_eq!(
        order.iter().position(|l| *l == "long"),
        Some(10),
        "every quick call was answered before any long one: {order:?}"
    );
}

/// An answer too large to read (over 16 MiB) fails its own call only: batched with it, a call
/// that finishes after it (so its answer comes later in the same stream) is still answered;
/// sent alone, the same large answer is refused the same way.
#[tokio::test]
async fn mcp_an_answer_too_large_in_a_batch_fails_only_its_own_call() {
    let (_hub, s) = shared_session().await;
    let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let long = both_turns_taken(&s, 2, &done).await;
    let before = s.batched_calls();
    let huge = "SELECT repeat('x', 17 * 1024 * 1024) AS huge";
    let (big, small) = tokio::join!(
        s.execute_sql("execute_sql", huge),
        s.execute_sql(
            "execute_sql",
            "SELECT 42 AS n, pg_sleep(1) AS after_the_large_one"
        )
    );
    assert_eq!(
        s.batched_calls() - before,
        2,
        "the two calls went out in one batch"
    );
    assert!(
        matches!(&big, Err(McpError::Protocol(m)) if m.contains("larger than 16 MiB")),
        "{big:?}"
    );
    assert_eq!(small.unwrap().statements[0].rows[0]["n"], 42);
    for l in long {
        l.await.unwrap();
    }
    let alone = s.execute_sql("execute_sql", huge).await;
    assert!(
        matches!(&alone, Err(McpError::Protocol(m)) if m.contains("larger than 16 MiB")),
        "{alone:?}"
    );
}

/// Batches stay within what DBHub accepts in one request (100 KiB): eight 40 KiB calls at once
/// all run (none refused with 413 for a batch grown too large), each answered with its own text.
#[tokio::test]
async fn mcp_batches_of_large_calls_stay_within_dbhubs_request_size() {
    let (_hub, s) = shared_session().await;
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..8 {
        let s = s.clone();
        calls.spawn(async move {
            let text = format!("{n}").repeat(40 * 1024);
            let r = s
                .execute_sql(
                    "execute_sql",
                    &format!("SELECT length('{text}') AS l, {n} AS n"),
                )
                .await
                .unwrap();
            assert_eq!(r.statements[0].rows[0]["l"], 40 * 1024);
            assert_eq!(r.statements[0].rows[0]["n"], n);
        });
    }
    calls.join_all().await;
    assert!(
        s.batched_calls() > 0,
        "no call was batched: nothing was checked"
    );
}
