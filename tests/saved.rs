//! Saved queries (issue 16) as Aether's query console uses them, against real Neo4j and, for
//! execution, real PostgreSQL through a real DBHub: who sees what (owner, space, team, viewer,
//! another space), owner-only changes, filters/sort/paging/search, invalid bodies that write
//! nothing, execution through the query path with history and exact statistics under
//! concurrency, copies, and the cascade when the database goes.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::api::{self, Call, org_space, person};
use crate::support::dbhub::serve_instance;
use crate::support::scenario::{cr_of, pg_body, register, setup, wait_served};
use crate::support::{stack, unique};

const BASE: &str = "/api/v1/saved-queries";

async fn save(call: &Call<'_>, body: Value) -> Value {
    let (code, saved) = call.send("POST", BASE, Some(body)).await;
    assert_eq!(code, 201, "{saved}");
    saved
}

async fn ids(call: &Call<'_>, query: &str) -> BTreeSet<String> {
    let (code, list) = call.send("GET", &format!("{BASE}{query}"), None).await;
    assert_eq!(code, 200, "{query}: {list}");
    list["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap().to_string())
        .collect()
}

async fn count_in_space(graph: &neo4rs::Graph, space: &str) -> i64 {
    let mut rows = graph
        .execute(
            neo4rs::query("MATCH (s:SavedQuery {space_id: $space}) RETURN count(s) AS n")
                .param("space", space),
        )
        .await
        .unwrap();
    rows.next().await.unwrap().unwrap().get("n").unwrap()
}

fn set(items: &[&Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn saved_queries_visibility_ownership_filters_and_validation() {
    let (_ns, _ctl, server, _port) = setup("saved").await;
    let graph = api::graph();
    let (owner, member, teammate, viewer, outsider) = (
        person(&graph).await,
        person(&graph).await,
        person(&graph).await,
        person(&graph).await,
        person(&graph).await,
    );
    let (space, tenant) = org_space(
        &graph,
        &[
            (&owner, "admin"),
            (&member, "member"),
            (&teammate, "member"),
            (&viewer, "viewer"),
        ],
    )
    .await;
    let team = unique("team");
    graph
        .run(
            neo4rs::query(
                "CREATE (t:Team {id: $team}) WITH t MATCH (u:User {id: $user}) CREATE (u)-[:MEMBER_OF {role: 'member'}]->(t)",
            )
            .param("team", team.as_str())
            .param("user", teammate.id.as_str()),
        )
        .await
        .unwrap();
    let as_ = |p: &api::Person| Call {
        api: &server,
        token: api::token(&p.sub),
        space_type: "organization",
        space_id: space.clone(),
    };
    let (o, m, t, v) = (as_(&owner), as_(&member), as_(&teammate), as_(&viewer));
    let elsewhere = api::personal(&server, &outsider);
    let db = register(&o, pg_body("sales", json!({}))).await;
    let their_db = register(&elsewhere, pg_body("theirs", json!({}))).await;

    // What the console's "Save" sends; Aether's defaults fill the rest.
    let private = save(
        &o,
        json!({"name": "Top customers", "query": "SELECT 1", "database_id": db}),
    )
    .await;
    assert_eq!(private["visibility"], "private");
    assert_eq!(private["database_name"], "sales");
    assert_eq!(
        (
            private["execution_count"].as_i64(),
            private["last_executed_at"].is_null()
        ),
        (Some(0), true)
    );
    assert_eq!(private["tenant_id"], tenant.as_str());
    let shared = save(
        &o,
        json!({"name": "Revenue by month", "description": "Finance dashboard",
        "query": "SELECT 2", "database_id": db, "visibility": "shared", "shared_with_teams": [team],
        "tags": ["finance", "monthly"], "folder": "reports"}),
    )
    .await;
    let public = save(
        &o,
        json!({"name": "all orders", "query": "SELECT count(*) FROM orders",
        "database_id": db, "visibility": "public", "tags": ["ops"], "folder": "reports"}),
    )
    .await;
    let members = save(
        &m,
        json!({"name": "My public", "query": "select 'Needle'", "database_id": db,
        "visibility": "public"}),
    )
    .await;
    assert_eq!(members["owner_id"], member.id.as_str());

    // Who sees what, by reading each and by listing.
    let all = [&private, &shared, &public, &members];
    for (who, call, sees) in [
        ("owner", &o, set(&all)),
        ("member", &m, set(&[&public, &members])),
        ("teammate", &t, set(&[&shared, &public, &members])),
        ("viewer", &v, set(&[&public, &members])),
    ] {
        assert_eq!(ids(call, "").await, sees, "{who} lists");
        for q in all {
            let id = q["id"].as_str().unwrap();
            let (code, body) = call.send("GET", &format!("{BASE}/{id}"), None).await;
            let want = if sees.contains(id) { 200 } else { 404 };
            assert_eq!(code, want, "{who} reads {}: {body}", q["name"]);
        }
    }
    // Another space: nothing of this one, by id or in its list.
    assert!(ids(&elsewhere, "").await.is_empty());
    let (code, _) = elsewhere
        .send(
            "GET",
            &format!("{BASE}/{}", public["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 404);

    // Only the owner changes or deletes; those who see it get 403, others 404.
    let pid = public["id"].as_str().unwrap();
    let priv_id = private["id"].as_str().unwrap();
    for (method, body) in [("PUT", Some(json!({"name": "mine now"}))), ("DELETE", None)] {
        let (code, problem) = m.send(method, &format!("{BASE}/{pid}"), body.clone()).await;
        assert_eq!(
            (code, problem["code"].as_str()),
            (403, Some("FORBIDDEN")),
            "{method}: {problem}"
        );
        let (code, _) = m.send(method, &format!("{BASE}/{priv_id}"), body).await;
        assert_eq!(code, 404, "{method} on an invisible one");
    }
    // The owner's partial update: the edit form echoes the record with read-only fields.
    let mut echoed = public.clone();
    echoed["name"] = json!("All orders");
    echoed["execution_count"] = json!(99);
    echoed["owner_id"] = json!(member.id);
    let (code, updated) = o.send("PUT", &format!("{BASE}/{pid}"), Some(echoed)).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["name"], "All orders");
    assert_eq!(
        (
            updated["execution_count"].as_i64(),
            updated["owner_id"].as_str()
        ),
        (Some(0), Some(owner.id.as_str()))
    );
    assert_eq!(updated["tags"], json!(["ops"]), "absent fields stay");
    let (code, only_desc) = o
        .send(
            "PUT",
            &format!("{BASE}/{pid}"),
            Some(json!({"description": "d"})),
        )
        .await;
    assert_eq!(
        (code, only_desc["query"].as_str()),
        (200, Some("SELECT count(*) FROM orders"))
    );

    // Viewers read and run, but do not save.
    let (code, problem) = v
        .send(
            "POST",
            BASE,
            Some(json!({"name": "x", "query": "SELECT 1", "database_id": db})),
        )
        .await;
    assert_eq!(
        (code, problem["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{problem}"
    );

    // Invalid bodies name their field and write nothing.
    let before = count_in_space(&graph, &space).await;
    let long = |n: usize| "x".repeat(n);
    for (body, field) in [
        (json!({"query": "SELECT 1", "database_id": db}), "name"),
        (
            json!({"name": long(256), "query": "SELECT 1", "database_id": db}),
            "name",
        ),
        (json!({"name": "n", "database_id": db}), "query"),
        (
            json!({"name": "n", "query": long(100_001), "database_id": db}),
            "query",
        ),
        (
            json!({"name": "n", "query": "q", "database_id": db, "description": long(2001)}),
            "description",
        ),
        (
            json!({"name": "n", "query": "q", "database_id": db, "folder": long(256)}),
            "folder",
        ),
        (json!({"name": "n", "query": "q"}), "database_id"),
        (
            json!({"name": "n", "query": "q", "database_id": db, "visibility": "world"}),
            "visibility",
        ),
        (
            json!({"name": "n", "query": "q", "database_id": db, "visibility": "shared"}),
            "shared_with_teams",
        ),
        (
            json!({"name": "n", "query": "q", "database_id": db, "tags": "finance"}),
            "tags",
        ),
        (
            json!({"name": "n", "query": "q", "database_id": db, "tags": [""]}),
            "tags",
        ),
    ] {
        let (code, problem) = o.send("POST", BASE, Some(body.clone())).await;
        assert_eq!(code, 400, "{body}: {problem}");
        assert_eq!(
            problem["details"]["validation_errors"][0]["field"], field,
            "{problem}"
        );
    }
    for (body, what) in [
        (
            json!({"name": "n", "query": "q", "database_id": their_db}),
            "another space's database",
        ),
        (
            json!({"name": "n", "query": "q", "database_id": "no-such-db"}),
            "no database",
        ),
    ] {
        let (code, problem) = o.send("POST", BASE, Some(body)).await;
        assert_eq!(code, 404, "{what}: {problem}");
    }
    let (code, problem) = o
        .send("PUT", &format!("{BASE}/{pid}"), Some(json!({"name": ""})))
        .await;
    assert_eq!(
        (
            code,
            problem["details"]["validation_errors"][0]["field"].as_str()
        ),
        (400, Some("name"))
    );
    let (code, _) = o
        .send(
            "PUT",
            &format!("{BASE}/{pid}"),
            Some(json!({"database_id": their_db})),
        )
        .await;
    assert_eq!(code, 404, "moving it to another space's database");
    assert_eq!(
        count_in_space(&graph, &space).await,
        before,
        "nothing written"
    );
    let (_, still) = o.send("GET", &format!("{BASE}/{pid}"), None).await;
    assert_eq!(still["name"], "All orders");

    // Filters, search, sort and paging (the owner sees all four).
    let q = |s: &str| s.to_string();
    assert_eq!(
        ids(&o, &q("?visibility=public")).await,
        set(&[&public, &members])
    );
    assert_eq!(
        ids(&o, &q("?folder=reports")).await,
        set(&[&shared, &public])
    );
    assert_eq!(ids(&o, &q("?tags=monthly,nope")).await, set(&[&shared]));
    assert_eq!(
        ids(&o, &format!("?owner_id={}", member.id)).await,
        set(&[&members])
    );
    assert_eq!(ids(&o, &format!("?database_id={db}")).await, set(&all));
    assert_eq!(
        ids(&o, &q("?search=FINANCE")).await,
        set(&[&shared]),
        "description"
    );
    assert_eq!(
        ids(&o, &q("?search=needle")).await,
        set(&[&members]),
        "SQL text"
    );
    assert_eq!(
        ids(&o, &q("?search=top%20CUST")).await,
        set(&[&private]),
        "name"
    );
    let (_, by_name) = o
        .send("GET", &format!("{BASE}?sort_by=name&sort_order=asc"), None)
        .await;
    let names: Vec<&str> = by_name["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "All orders",
            "My public",
            "Revenue by month",
            "Top customers"
        ]
    );
    let (_, page) = o
        .send(
            "GET",
            &format!("{BASE}?sort_by=name&sort_order=desc&page=2&page_size=3"),
            None,
        )
        .await;
    assert_eq!(
        (
            page["total"].as_i64(),
            page["page"].as_i64(),
            page["page_size"].as_i64()
        ),
        (Some(4), Some(2), Some(3))
    );
    assert_eq!(page["queries"][0]["name"], "All orders", "{page}");
    for bad in [
        "?sort_by=owner",
        "?sort_order=up",
        "?page=0",
        "?page_size=101",
        "?visibility=all",
    ] {
        let (code, problem) = o.send("GET", &format!("{BASE}{bad}"), None).await;
        assert_eq!(code, 400, "{bad}: {problem}");
    }

    // Copies: private, owned by whoever copies, of what they can see.
    let sid = shared["id"].as_str().unwrap();
    let (code, copy) = t
        .send("POST", &format!("{BASE}/{sid}/duplicate"), Some(json!({})))
        .await;
    assert_eq!(code, 201, "{copy}");
    assert_eq!(
        (copy["name"].as_str(), copy["visibility"].as_str()),
        (Some("Revenue by month (copy)"), Some("private"))
    );
    assert_eq!(
        (copy["owner_id"].as_str(), copy["query"].as_str()),
        (Some(teammate.id.as_str()), Some("SELECT 2"))
    );
    assert_eq!(copy["shared_with_teams"], json!([]));
    let (code, named) = t
        .send(
            "POST",
            &format!("{BASE}/{sid}/duplicate"),
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_eq!((code, named["name"].as_str()), (201, Some("Mine")));
    let (code, _) = m
        .send("POST", &format!("{BASE}/{priv_id}/duplicate"), None)
        .await;
    assert_eq!(code, 404, "an invisible one");
    let (code, _) = v
        .send("POST", &format!("{BASE}/{pid}/duplicate"), None)
        .await;
    assert_eq!(code, 403, "viewers do not save");
    let copy_id = copy["id"].as_str().unwrap();
    let (code, _) = o.send("GET", &format!("{BASE}/{copy_id}"), None).await;
    assert_eq!(code, 404, "the copy is private to the teammate");

    // The owner deletes; then the database goes and takes the rest with it.
    let (code, _) = o.send("DELETE", &format!("{BASE}/{priv_id}"), None).await;
    assert_eq!(code, 204);
    let (code, _) = o.send("GET", &format!("{BASE}/{priv_id}"), None).await;
    assert_eq!(code, 404);
    assert!(count_in_space(&graph, &space).await > 0);
    let (code, _) = o
        .send("DELETE", &format!("/api/v1/databases/{db}"), None)
        .await;
    assert_eq!(code, 204);
    assert_eq!(
        count_in_space(&graph, &space).await,
        0,
        "saved queries go with their database"
    );
    assert!(ids(&t, "").await.is_empty());
}

#[tokio::test]
async fn saved_queries_execute_through_the_query_path_and_count_every_run() {
    let (ns, _ctl, server, port) = setup("savedrun").await;
    let graph = api::graph();
    let (owner, viewer) = (person(&graph).await, person(&graph).await);
    let (space, _) = org_space(&graph, &[(&owner, "owner"), (&viewer, "viewer")]).await;
    let as_ = |p: &api::Person| Call {
        api: &server,
        token: api::token(&p.sub),
        space_type: "organization",
        space_id: space.clone(),
    };
    let (o, v) = (as_(&owner), as_(&viewer));
    let table = unique("sq").replace('-', "_");
    let mut pg = sqlx::PgConnection::connect(stack().get("STACK_PG_URL"))
        .await
        .unwrap();
    for s in [
        format!("CREATE TABLE {table} (n int)"),
        format!("INSERT INTO {table} SELECT generate_series(1, 7)"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut pg)
            .await
            .unwrap();
    }
    let db = register(&o, pg_body("runs", json!({"readonly": true}))).await;
    let instance = format!("dbhub-{space}");
    wait_served(&ns, &instance, &[cr_of(&db)]).await;
    let _hub = serve_instance(&ns, &instance, port).await;

    let read = save(
        &o,
        json!({"name": "Seven", "query": format!("SELECT n FROM {table} ORDER BY n"),
        "database_id": db, "visibility": "public"}),
    )
    .await;
    let id = read["id"].as_str().unwrap().to_string();
    let url = format!("{BASE}/{id}/execute");

    // What the console sends.
    let (code, out) = o.send("POST", &url, Some(json!({"parameters": []}))).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        (out["query_id"].as_str(), out["query_name"].as_str()),
        (Some(id.as_str()), Some("Seven"))
    );
    assert_eq!(out["columns"], json!(["n"]));
    assert_eq!(
        (out["row_count"].as_i64(), out["truncated"].as_bool()),
        (Some(7), Some(false))
    );
    assert_eq!(out["rows"][6]["n"], 7);
    assert!(
        out["executed_at"].is_string() && out["duration_ms"].is_i64(),
        "{out}"
    );
    let (_, after) = o.send("GET", &format!("{BASE}/{id}"), None).await;
    assert_eq!(
        (
            after["execution_count"].as_i64(),
            after["last_row_count"].as_i64()
        ),
        (Some(1), Some(7))
    );
    assert_eq!(after["last_executed_by"], owner.id.as_str());
    assert!(
        after["last_executed_at"].is_string() && after["avg_duration_ms"].as_f64().unwrap() > 0.0,
        "{after}"
    );
    // ... and the run is in the caller's history, pointing at the saved query.
    let (_, history) = o.send("GET", "/api/v1/query-history", None).await;
    let entry = &history["history"][0];
    assert_eq!(
        (entry["saved_query_id"].as_str(), entry["status"].as_str()),
        (Some(id.as_str()), Some("success")),
        "{history}"
    );
    let linked: i64 = {
        let mut rows = graph
            .execute(neo4rs::query("MATCH (:QueryExecution)-[:RUN_OF]->(s:SavedQuery {id: $id}) RETURN count(*) AS n").param("id", id.as_str()))
            .await
            .unwrap();
        rows.next().await.unwrap().unwrap().get("n").unwrap()
    };
    assert_eq!(linked, 1);

    // The same rules as any query: a viewer runs reads; bind parameters are refused; max_rows
    // lowers; no body at all is fine.
    let (code, out) = v.send("POST", &url, None).await;
    assert_eq!((code, out["row_count"].as_i64()), (200, Some(7)), "{out}");
    let (code, problem) = v.send("POST", &url, Some(json!({"parameters": [1]}))).await;
    assert_eq!(
        (
            code,
            problem["details"]["validation_errors"][0]["field"].as_str()
        ),
        (400, Some("parameters"))
    );
    let (code, out) = o.send("POST", &url, Some(json!({"max_rows": 2}))).await;
    assert_eq!(
        (code, out["row_count"].as_i64(), out["truncated"].as_bool()),
        (200, Some(2), Some(true))
    );

    // A saved write on a read-only database is refused and changes nothing.
    let wipe = save(
        &o,
        json!({"name": "wipe", "query": format!("DELETE FROM {table}"), "database_id": db}),
    )
    .await;
    let (code, problem) = o
        .send(
            "POST",
            &format!("{BASE}/{}/execute", wipe["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (code, problem["code"].as_str()),
        (403, Some("READONLY_VIOLATION")),
        "{problem}"
    );
    let left: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!(left, 7);
    let (_, wipe_now) = o
        .send(
            "GET",
            &format!("{BASE}/{}", wipe["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        wipe_now["execution_count"], 0,
        "refused runs are not counted"
    );

    // Concurrent runs are each counted (past the 4 pooled Neo4j connections of the test API).
    let (_, before) = o.send("GET", &format!("{BASE}/{id}"), None).await;
    let n0 = before["execution_count"].as_i64().unwrap();
    let runs = 12;
    let results = futures::future::join_all((0..runs).map(|i| {
        let call = if i % 2 == 0 { &o } else { &v };
        let url = url.clone();
        async move {
            call.send("POST", &url, Some(json!({"parameters": []})))
                .await
        }
    }))
    .await;
    for (code, body) in &results {
        assert_eq!(*code, 200, "{body}");
    }
    let (_, counted) = o.send("GET", &format!("{BASE}/{id}"), None).await;
    assert_eq!(
        counted["execution_count"].as_i64(),
        Some(n0 + runs),
        "{counted}"
    );

    // Its database not Connected: the same 409 as a query.
    let broken = {
        let mut b = pg_body("broken", json!({}));
        b["password"] = json!("wrong");
        let (code, created) = o.send("POST", "/api/v1/databases", Some(b)).await;
        assert_eq!(code, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        api::wait_status(&o, &id, "Failed").await;
        id
    };
    let stuck = save(
        &o,
        json!({"name": "stuck", "query": "SELECT 1", "database_id": broken}),
    )
    .await;
    let (code, problem) = o
        .send(
            "POST",
            &format!("{BASE}/{}/execute", stuck["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (code, problem["details"]["status"].as_str()),
        (409, Some("Failed")),
        "{problem}"
    );
    let (code, problem) = o
        .send(
            "POST",
            &format!("/api/v1/databases/{broken}/query"),
            Some(json!({"query": "SELECT 1"})),
        )
        .await;
    assert_eq!(
        (code, problem["code"].as_str()),
        (409, Some("CONFLICT")),
        "{problem}"
    );
}
