//! SQL built to take the process down, sent to a running API: flat chains that parse into very
//! deep trees, deep nesting, oversized text and statement floods. With the default limits they
//! are refused with a 400 naming the limit (never a 503 inviting a retry); with the limits
//! raised far beyond, classification still runs without overflowing any stack. Either way the
//! service answers the next request.

use serde_json::{Value, json};

use crate::support::api::{self, person, personal};
use crate::support::dbhub::serve_instance;
use crate::support::scenario::{cr_of, pg_body, query, register, setup_with, wait_served};

fn chain(terms: usize, sep: &str) -> String {
    let mut s = String::from("SELECT 1");
    for _ in 1..terms {
        s.push_str(sep);
        s.push('1');
    }
    s
}

fn hostile() -> Vec<(&'static str, String)> {
    vec![
        ("200 000-term + chain", chain(200_000, "+")),
        (
            "50 000-term UNION ALL chain",
            chain(50_000, " UNION ALL SELECT "),
        ),
        (
            "10 000 nested parentheses",
            format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
        ),
        ("1 MB of SQL", format!("SELECT '{}'", "x".repeat(1_000_000))),
        ("10 000 statements", "SELECT 1;".repeat(10_000)),
    ]
}

async fn still_answers(call: &crate::support::api::Call<'_>, id: &str) {
    let (code, out) = query(call, id, json!({"query": "SELECT 41 + 1 AS answer"})).await;
    assert_eq!(
        (code, &out["rows"][0]["answer"]),
        (200, &json!(42)),
        "{out}"
    );
}

fn limit_named(problem: &Value) -> String {
    problem["details"]["validation_errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn hostile_sql_is_refused_by_limits_and_never_takes_the_service_down() {
    let (ns, _ctl, server, port) = setup_with("hostile", Default::default()).await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);
    let id = register(&call, pg_body("hostile", json!({}))).await;
    let instance = format!("dbhub-{}", owner.space);
    wait_served(&ns, &instance, &[cr_of(&id)]).await;
    let _hub = serve_instance(&ns, &instance, port).await;
    still_answers(&call, &id).await;
    for (what, sql) in hostile() {
        let (code, problem) = query(&call, &id, json!({"query": sql})).await;
        assert_eq!(code, 400, "{what}: {problem}");
        assert!(
            limit_named(&problem).contains("--query-max-"),
            "{what}: {problem}"
        );
        still_answers(&call, &id).await;
    }
}

#[tokio::test]
async fn hostile_sql_within_raised_limits_is_classified_without_overflowing_a_stack() {
    let options = api::Options {
        limits: aether_dbhub::http::Limits {
            sql: aether_dbhub::sql::Limits {
                max_bytes: 4 << 20,
                max_statements: 20_000,
                max_tokens: 1_000_000,
            },
            max_body_bytes: 8 << 20,
            ..Default::default()
        },
        ..Default::default()
    };
    let (ns, _ctl, server, port) = setup_with("hostile2", options).await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);
    // Read-only (the default): whatever the classifier cannot prove a read is refused with 403
    // before DBHub; what it proves a read goes on to DBHub and the database.
    let id = register(&call, pg_body("hostile", json!({}))).await;
    let instance = format!("dbhub-{}", owner.space);
    wait_served(&ns, &instance, &[cr_of(&id)]).await;
    let _hub = serve_instance(&ns, &instance, port).await;
    for (what, sql) in hostile() {
        let (code, problem) = query(&call, &id, json!({"query": sql})).await;
        // DBHub itself takes at most 100 KiB per request: larger reads are refused naming that;
        // what the parser gives up on (nesting past its recursion limit) is not run.
        let named = limit_named(&problem);
        assert!(
            [200, 403, 422].contains(&code)
                || code == 400
                    && (named.contains("DBHub, which accepts at most")
                        || named.contains("could not be analysed")),
            "{what}: an answer from the classifier, DBHub or the database, got {code} {problem}"
        );
        still_answers(&call, &id).await;
    }
}
