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
    let token = unique("tok");
    let hub = readonly_pg_hub(&token).await;
    let s = std::sync::Arc::new(Session::connect(&hub.url(), &token, T).await.unwrap());
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
