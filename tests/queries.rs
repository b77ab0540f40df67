//! Queries, schema browsing and history end to end: the API registers a database (the
//! URL-hostile password), the Database reconciler checks it, the DBHubInstance reconciler
//! configures the space's DBHub, the test starts that DBHub from the generated objects (no
//! kubelet here), and the API reaches it over MCP.

use std::time::Duration;

use dbhub_operator::crd::DBHubInstance;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::api::{self, Call, person, personal, wait_status};
use crate::support::dbhub::{PodHub, free_port, serve_instance};
use crate::support::kube::TestNamespace;
use crate::support::scenario::{cr_of, pg_body, query, register, setup, wait_served};
use crate::support::{logs, stack, unique};

fn mariadb_body(name: &str, readonly: bool) -> Value {
    let s = stack();
    json!({"name": name, "type": "mariadb", "host": s.get("STACK_MARIADB_HOST"),
        "port": s.get("STACK_MARIADB_PORT"), "database": s.get("STACK_DB_NAME"),
        "username": s.get("STACK_DB_USER"), "password": s.hostile_password(),
        "readonly": readonly})
}

/// What DBHub itself received (its `/api/requests` log of tool calls).
async fn dbhub_saw(hub: &PodHub, token: &str) -> String {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/requests", hub.port))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn assert_no_password(what: &str, text: &str) {
    let pw = stack().hostile_password();
    assert!(!text.contains(pw), "the password leaked into {what}");
    // The percent-encoded form, as it sits in the stack's connection URL.
    let app_url = stack().get("STACK_PG_URL");
    let user_at = app_url.find("://").unwrap() + 3;
    let userinfo = &app_url[user_at..app_url.rfind('@').unwrap()];
    let encoded = userinfo.split_once(':').unwrap().1.to_string();
    assert!(
        !text.contains(&encoded),
        "the encoded password leaked into {what}"
    );
}

#[tokio::test]
async fn queries_postgres_end_to_end_with_schema_history_and_isolation() {
    let (ns, _ctl, server, port) = setup("qpg").await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);
    let mut responses = String::new();

    // A small schema, made by the application user. `id` is NOT the key: primary keys must come
    // from the index data.
    let t = unique("q").replace('-', "_");
    let mut conn = sqlx::PgConnection::connect(stack().get("STACK_PG_URL"))
        .await
        .unwrap();
    for stmt in [
        format!(
            "CREATE TABLE {t} (qty int NOT NULL DEFAULT 1, code text PRIMARY KEY, id int, note text)"
        ),
        format!("CREATE TABLE {t}_line (line_no int PRIMARY KEY, code text REFERENCES {t}(code))"),
        format!(
            "INSERT INTO {t} (qty, code, id, note) VALUES (5,'a',10,'x'),(4,'b',11,'y'),(3,'c',12,NULL),(2,'d',13,'z'),(1,'e',14,'w')"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    // Not yet Connected → 409 with the status. (Pending right after create.)
    let (code, created) = call
        .send(
            "POST",
            "/api/v1/databases",
            Some(pg_body("orders", json!({"max_rows": 4}))),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (code, early) = query(&call, &id, json!({"query": "SELECT 1"})).await;
    if code == 409 {
        assert_eq!(early["details"]["status"], "Pending", "{early}");
    } else {
        // The check may already have passed; DBHub is not running yet either way.
        assert_eq!(code, 503, "{early}");
    }
    wait_status(&call, &id, "Connected").await;
    let instance = format!("dbhub-{}", owner.space);
    wait_served(&ns, &instance, &[cr_of(&id)]).await;
    let hub = serve_instance(&ns, &instance, port).await;
    let token = hub.token.clone();

    // Rows with columns in the table's order as selected (not alphabetical).
    let sql = format!("SELECT qty, code, id, note FROM {t} ORDER BY code");
    let (code, out) = query(&call, &id, json!({"query": sql})).await;
    assert_eq!(code, 200, "{out}");
    responses += &out.to_string();
    assert_eq!(out["columns"], json!(["qty", "code", "id", "note"]));
    assert_eq!(
        out["rows"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["qty", "code", "id", "note"]
    );
    // The database's max_rows (4) cut the five rows in DBHub.
    assert_eq!(
        (out["row_count"].as_i64(), out["truncated"].as_bool()),
        (Some(4), Some(true))
    );
    assert!(out["duration_ms"].as_i64().unwrap() >= 0);
    assert!(out.get("statements").is_none());

    // max_rows lowers the limit; it cannot raise it.
    let (_, low) = query(&call, &id, json!({"query": sql, "max_rows": 2})).await;
    assert_eq!(
        (low["row_count"].as_i64(), low["truncated"].as_bool()),
        (Some(2), Some(true))
    );
    let (_, high) = query(&call, &id, json!({"query": sql, "max_rows": 500})).await;
    assert_eq!(high["row_count"], 4);
    let (_, all) = query(
        &call,
        &id,
        json!({"query": format!("SELECT code FROM {t} WHERE qty > 3")}),
    )
    .await;
    assert_eq!(
        (all["row_count"].as_i64(), all["truncated"].as_bool()),
        (Some(2), Some(false))
    );

    // Several statements: each reported, the last on top.
    let (code, multi) = query(
        &call,
        &id,
        json!({"query": "SELECT 1 AS a; SELECT 2 AS b, 3 AS c"}),
    )
    .await;
    assert_eq!(code, 200, "{multi}");
    assert_eq!(multi["columns"], json!(["b", "c"]));
    assert_eq!(multi["statements"].as_array().unwrap().len(), 2);
    assert_eq!(multi["statements"][0]["columns"], json!(["a"]));

    // Bind parameters are refused, not spliced.
    let (code, p) = query(&call, &id, json!({"query": "SELECT $1", "params": [1]})).await;
    assert_eq!(code, 400, "{p}");
    assert_eq!(p["details"]["validation_errors"][0]["field"], "params");

    // Read-only (the default): writes refused by the service, DBHub never sees them.
    let refused = [
        format!("INSERT INTO {t} (code) VALUES ('zz')"),
        format!("WITH gone AS (DELETE FROM {t} RETURNING *) SELECT * FROM gone"),
        format!("SELECT 1; DELETE FROM {t}"),
    ];
    for w in &refused {
        let (code, body) = query(&call, &id, json!({"query": w})).await;
        assert_eq!(code, 403, "{w}: {body}");
        assert_eq!(body["code"], "READONLY_VIOLATION", "{body}");
    }
    let seen = dbhub_saw(&hub, &token).await;
    assert!(
        seen.contains(&format!("SELECT qty, code, id, note FROM {t}")),
        "{seen}"
    );
    for w in &refused {
        assert!(!seen.contains(w.as_str()), "DBHub saw {w}");
    }
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 5);

    // A SQL error is a 422 with the database's message.
    let (code, err) = query(
        &call,
        &id,
        json!({"query": "SELECT * FROM no_such_table_here"}),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("no_such_table_here"),
        "{err}"
    );

    // Schema browsing.
    let (code, schemas) = call
        .send(
            "GET",
            &format!("/api/v1/databases/{id}/schema?type=schema"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{schemas}");
    assert!(
        schemas["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!("public")),
        "{schemas}"
    );
    let (_, tables) = call
        .send("GET", &format!("/api/v1/databases/{id}/tables"), None)
        .await;
    let names: Vec<&str> = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&t.as_str()) && names.contains(&format!("{t}_line").as_str()),
        "{tables}"
    );
    assert!(tables["tables"][0].get("row_count").is_some());
    let (_, as_tables) = call
        .send(
            "GET",
            &format!("/api/v1/databases/{id}/schema?type=table"),
            None,
        )
        .await;
    assert!(
        as_tables["tables"].as_array().unwrap().len() >= 2,
        "{as_tables}"
    );
    let (code, cols) = call
        .send(
            "GET",
            &format!("/api/v1/databases/{id}/tables/{t}/columns?schema=public"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{cols}");
    let col = |name: &str| {
        cols["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no column {name}: {cols}"))
    };
    let names: Vec<&str> = cols["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["qty", "code", "id", "note"], "table order");
    assert_eq!(
        (
            col("code")["isPrimaryKey"].clone(),
            col("code")["primary_key"].clone()
        ),
        (json!(true), json!(true))
    );
    assert_eq!(
        col("id")["isPrimaryKey"],
        false,
        "a column named id is not a key by name"
    );
    assert_eq!(col("qty")["defaultValue"], "1");
    assert_eq!(col("qty")["nullable"], false);
    let (_, lines) = call
        .send(
            "GET",
            &format!("/api/v1/databases/{id}/tables/{t}_line/columns"),
            None,
        )
        .await;
    let fk = lines["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "code")
        .unwrap();
    assert_eq!(fk["isForeignKey"], true, "{lines}");
    assert_eq!(fk["isPrimaryKey"], false);
    let (code, _) = call
        .send(
            "GET",
            &format!("/api/v1/databases/{id}/tables/nope_{t}/columns"),
            None,
        )
        .await;
    assert_eq!(code, 404);

    // History: the caller's runs, newest first, cursor-paged.
    let (code, h) = call
        .send("GET", &format!("/api/v1/databases/{id}/history"), None)
        .await;
    assert_eq!(code, 200, "{h}");
    let runs = h["history"].as_array().unwrap();
    assert_eq!(runs[0]["statement"], "SELECT * FROM no_such_table_here");
    assert_eq!(runs[0]["status"], "error");
    assert!(
        runs.iter()
            .any(|r| r["status"] == "rejected" && r["statement"] == refused[0])
    );
    let first = runs
        .iter()
        .find(|r| r["statement"] == sql.as_str() && r["row_count"] == 4)
        .unwrap();
    assert_eq!(
        (first["status"].as_str(), first["truncated"].as_bool()),
        (Some("success"), Some(true))
    );
    let total = runs.len();
    let mut seen_ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = call
            .send(
                "GET",
                &format!("/api/v1/databases/{id}/history?limit=3&cursor={cursor}"),
                None,
            )
            .await;
        for r in page["history"].as_array().unwrap() {
            seen_ids.push(r["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let all_ids: Vec<String> = runs
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        seen_ids, all_ids,
        "pages of 3 walk the same {total} runs in order"
    );
    let (_, space_h) = call
        .send("GET", "/api/v1/query-history?limit=100", None)
        .await;
    assert_eq!(space_h["history"].as_array().unwrap().len(), total);
    let (code, bad) = call
        .send("GET", "/api/v1/query-history?cursor=nonsense", None)
        .await;
    assert_eq!(code, 400, "{bad}");

    // Another user in another space: 404 on everything of this database, an empty history, and
    // their own DBHub instance never holds this space's source.
    let stranger = person(&graph).await;
    let other = personal(&server, &stranger);
    for (method, path) in [
        ("POST", format!("/api/v1/databases/{id}/query")),
        ("GET", format!("/api/v1/databases/{id}/schema")),
        ("GET", format!("/api/v1/databases/{id}/tables")),
        ("GET", format!("/api/v1/databases/{id}/tables/{t}/columns")),
        ("GET", format!("/api/v1/databases/{id}/history")),
    ] {
        let body = (method == "POST").then(|| json!({"query": "SELECT 1"}));
        let (code, b) = other.send(method, &path, body).await;
        assert_eq!(code, 404, "{method} {path}: {b}");
    }
    let (_, theirs) = other.send("GET", "/api/v1/query-history", None).await;
    assert_eq!(theirs["history"], json!([]));
    let their_id = register(&other, pg_body("theirs", json!({}))).await;
    let their_instance = format!("dbhub-{}", stranger.space);
    wait_served(&ns, &their_instance, &[cr_of(&their_id)]).await;
    let cm = ns
        .api::<ConfigMap>()
        .get(&format!("{their_instance}-config"))
        .await
        .unwrap();
    let toml = cm.data.unwrap().into_values().collect::<String>();
    let ours = cr_of(&id).replace('-', "_");
    assert!(
        !toml.contains(&ours),
        "the other space's DBHub holds our source:\n{toml}"
    );
    assert!(toml.contains(&cr_of(&their_id).replace('-', "_")));
    let ours_cm = ns
        .api::<ConfigMap>()
        .get(&format!("{instance}-config"))
        .await
        .unwrap();
    let our_toml = ours_cm.data.unwrap().into_values().collect::<String>();
    assert!(!our_toml.contains(&cr_of(&their_id).replace('-', "_")));

    // DBHub stopped → 503, recorded as an error.
    drop(hub);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, down) = query(&call, &id, json!({"query": "SELECT 1"})).await;
    assert_eq!(code, 503, "{down}");
    responses += &down.to_string();
    responses += &h.to_string();
    responses += &cols.to_string();

    // Removing the database removes its history with it.
    let (code, _) = call
        .send("DELETE", &format!("/api/v1/databases/{id}"), None)
        .await;
    assert_eq!(code, 204);
    let (_, after) = call.send("GET", "/api/v1/query-history", None).await;
    assert_eq!(after["history"], json!([]), "{after}");

    assert_no_password("responses", &responses);
    assert_no_password("logs", &logs::text());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {t}_line, {t}")))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn queries_mariadb_readonly_in_depth_and_writes_by_role() {
    let (ns, _ctl, server, port) = setup("qmaria").await;
    let graph = api::graph();
    let (owner, member, viewer) = (
        person(&graph).await,
        person(&graph).await,
        person(&graph).await,
    );
    let (space, _) = api::org_space(
        &graph,
        &[(&owner, "owner"), (&member, "member"), (&viewer, "viewer")],
    )
    .await;
    let as_role = |p: &api::Person| Call {
        api: &server,
        token: api::token(&p.sub),
        space_type: "organization",
        space_id: space.clone(),
    };

    let t = unique("m").replace('-', "_");
    let mut conn = sqlx::MySqlConnection::connect(stack().get("STACK_MARIADB_URL"))
        .await
        .unwrap();
    for stmt in [
        format!(
            "CREATE TABLE {t} (name varchar(20) NOT NULL, sku varchar(20) PRIMARY KEY, id int)"
        ),
        format!("INSERT INTO {t} VALUES ('one','s1',1),('two','s2',2)"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    // Two sources in one DBHub: tools are suffixed per source.
    let ro = register(&as_role(&owner), mariadb_body("ro", true)).await;
    let rw = register(&as_role(&owner), mariadb_body("rw", false)).await;
    let instance = format!("dbhub-{space}");
    wait_served(&ns, &instance, &[cr_of(&ro), cr_of(&rw)]).await;
    let hub = serve_instance(&ns, &instance, port).await;
    let token = hub.token.clone();

    let select = format!("SELECT sku, name FROM {t} ORDER BY sku");
    for db in [&ro, &rw] {
        let (code, out) = query(&as_role(&viewer), db, json!({"query": select})).await;
        assert_eq!(code, 200, "{out}");
        assert_eq!(out["columns"], json!(["sku", "name"]));
        assert_eq!(out["rows"][1]["name"], "two");
    }

    // Read-only database: refused in the service, whoever asks.
    for w in [
        format!("INSERT INTO {t} VALUES ('three','s3',3)"),
        format!("SELECT 1; DELETE FROM {t}"),
        format!("UPDATE {t} SET name = 'x'"),
    ] {
        let (code, body) = query(&as_role(&owner), &ro, json!({"query": w})).await;
        assert_eq!(
            (code, body["code"].as_str()),
            (403, Some("READONLY_VIOLATION")),
            "{w}: {body}"
        );
    }
    let seen = dbhub_saw(&hub, &token).await;
    assert!(
        !seen.contains("INSERT INTO"),
        "DBHub saw a refused write: {seen}"
    );

    // Writable database: a member writes, a viewer may not.
    let insert = format!("INSERT INTO {t} VALUES ('three','s3',3)");
    let (code, denied) = query(&as_role(&viewer), &rw, json!({"query": insert})).await;
    assert_eq!(
        (code, denied["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{denied}"
    );
    let (code, wrote) = query(&as_role(&member), &rw, json!({"query": insert})).await;
    assert_eq!(code, 200, "{wrote}");
    assert_eq!(wrote["row_count"], 1);
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 3);

    // SQL error → 422 with MariaDB's message.
    let (code, err) = query(
        &as_role(&member),
        &rw,
        json!({"query": format!("SELECT nope FROM {t}")}),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(err["detail"].as_str().unwrap().contains("nope"), "{err}");

    // Columns: the key from the index data; the schema is the database.
    let (code, cols) = as_role(&viewer)
        .send(
            "GET",
            &format!("/api/v1/databases/{ro}/tables/{t}/columns"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{cols}");
    assert_eq!(cols["schema"], stack().get("STACK_DB_NAME"));
    let pk: Vec<&str> = cols["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["isPrimaryKey"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(pk, ["sku"]);

    // Each user sees only their own runs.
    let (_, mine) = as_role(&viewer)
        .send("GET", "/api/v1/query-history", None)
        .await;
    let statuses: Vec<&str> = mine["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["rejected", "success", "success"], "{mine}");
    let (_, members) = as_role(&member)
        .send("GET", &format!("/api/v1/databases/{rw}/history"), None)
        .await;
    assert_eq!(members["history"].as_array().unwrap().len(), 2, "{members}");

    assert_no_password("logs", &logs::text());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {t}")))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// `--instance-mode shared`: one DBHubInstance `dbhub` serves every space (tools suffixed per
/// source); each user reaches only their own database through it.
#[tokio::test]
async fn queries_through_a_shared_instance_stay_within_each_space() {
    logs::capture();
    let ns = TestNamespace::new("qshared").await;
    let _ctl = crate::support::operator::start(&ns.name).await;
    let port = free_port();
    let server = crate::support::api::serve_shared(
        &ns.name,
        ns.client.clone(),
        &format!("http://127.0.0.1:{port}/mcp"),
    )
    .await;
    let graph = api::graph();
    let (alice, bob) = (person(&graph).await, person(&graph).await);
    let (a, b) = (personal(&server, &alice), personal(&server, &bob));
    let a_id = register(&a, pg_body("alice-db", json!({}))).await;
    let b_id = register(&b, pg_body("bob-db", json!({}))).await;
    wait_served(&ns, "dbhub", &[cr_of(&a_id), cr_of(&b_id)]).await;
    assert_eq!(
        ns.api::<DBHubInstance>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1,
        "one instance for every space"
    );
    let _hub = serve_instance(&ns, "dbhub", port).await;
    for (call, id) in [(&a, &a_id), (&b, &b_id)] {
        let (code, out) = query(call, id, json!({"query": "SELECT current_user AS who"})).await;
        assert_eq!(code, 200, "{out}");
        assert_eq!(out["rows"][0]["who"], stack().get("STACK_DB_USER"));
    }
    let (code, _) = query(&a, &b_id, json!({"query": "SELECT 1"})).await;
    assert_eq!(
        code, 404,
        "another space's database through the shared instance"
    );
    // The shared instance stays when a space's last database goes.
    let (code, _) = a
        .send("DELETE", &format!("/api/v1/databases/{a_id}"), None)
        .await;
    assert_eq!(code, 204);
    assert!(
        ns.api::<DBHubInstance>()
            .get_opt("dbhub")
            .await
            .unwrap()
            .is_some()
    );
}
