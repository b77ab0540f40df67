//! The Aether frontend's databases UI, driven the way its code drives the API (issue 15): the
//! bodies are what `ConnectionFormModal.jsx` and `databaseConnectionsSlice.js` build (the form's
//! defaults from `databaseTypes.js`, the edit form's echo of the record, the snake_case
//! conversion on save), and the checks read what `ConnectionCard.jsx`, the slice and
//! `DatabaseSource.jsx` read. Real kube-apiserver, Neo4j, PostgreSQL, MariaDB and DBHub.

use dbhub_operator::crd::{Database, SslMode};
use serde_json::{Map, Value, json};
use sqlx::Connection;

use crate::support::api::{self, Call, person, personal, wait_status};
use crate::support::dbhub::serve_instance;
use crate::support::scenario::{cr_of, query, setup, setup_with, wait_served};
use crate::support::{stack, unique};

/// The frontend's type ids (`databaseTypes.js` `DATABASE_TYPES[].id`, the relational ones):
/// `getDatabaseTypeById(connection.databaseType || connection.type)` must find the record's.
const FRONTEND_TYPE_IDS: [&str; 4] = ["postgresql", "mysql", "sqlserver", "sqlite"];

/// The PostgreSQL form's fields, filled in by the user, as its `params` state holds them:
/// `port` a number, `sslMode` left at its default `prefer`.
fn pg_form_params(password: &str) -> Value {
    let s = stack();
    json!({"host": s.get("STACK_PG_HOST"), "port": s.get("STACK_PG_PORT").parse::<i64>().unwrap(),
           "database": s.get("STACK_DB_NAME"), "username": s.get("STACK_DB_USER"),
           "password": password, "sslMode": "prefer"})
}

/// `handleTestConnection`: `{databaseType, ...params}`.
fn test_body(database_type: &str, params: &Value) -> Value {
    let mut body = Map::new();
    body.insert("databaseType".into(), json!(database_type));
    for (k, v) in params.as_object().unwrap() {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

/// `handleSave`: `{name, type: mapDatabaseType(databaseType), ...convertParamsForBackend(params)}`
/// (camelCase keys become snake_case; a later key overwrites an earlier one's value, as in a
/// JavaScript object literal).
fn save_body(name: &str, database_type: &str, params: &Value) -> Value {
    let ty = match database_type {
        "postgresql" => "postgres",
        "mssql" => "sqlserver",
        other => other,
    };
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    body.insert("type".into(), json!(ty));
    for (k, v) in params.as_object().unwrap() {
        let mut snake = String::new();
        for c in k.chars() {
            if c.is_ascii_uppercase() {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        }
        body.insert(snake, v.clone());
    }
    Value::Object(body)
}

/// The edit form's `params`: the record without the keys the modal deletes.
fn edit_params(record: &Value) -> Value {
    let mut p = record.as_object().unwrap().clone();
    for k in [
        "id",
        "name",
        "databaseType",
        "type",
        "lastTestedAt",
        "lastTestStatus",
        "createdAt",
        "updatedAt",
    ] {
        p.remove(k);
    }
    Value::Object(p)
}

/// Aether's UI shows `message` as it is: a sentence, not a JSON dump or a fragment.
fn assert_sentence(what: &str, body: &Value) {
    let m = body["message"].as_str().unwrap_or_default();
    let first = m.chars().next().unwrap_or(' ');
    assert!(
        first.is_uppercase() && m.ends_with(['.', '!', '?']) && m.len() > 12 && !m.contains('{'),
        "{what}: message is not a sentence: {body}"
    );
    assert_eq!(body["message"], body["detail"], "{what}");
}

#[tokio::test]
async fn frontend_connection_form_flows_work_unchanged() {
    let (ns, _ctl, server, _port) = setup("fe").await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);
    let pw = stack().hostile_password();
    let params = pg_form_params(pw);

    // The form's "Test" with its defaults: `prefer` against a server without TLS connects.
    let (code, tested) = call
        .send(
            "POST",
            "/api/v1/databases/test",
            Some(test_body("postgresql", &params)),
        )
        .await;
    assert_eq!(
        (code, tested["status"].as_str()),
        (200, Some("connected")),
        "{tested}"
    );
    assert!(tested["latency_ms"].is_i64(), "{tested}");

    // A wrong password is a non-2xx the slice rejects, still saying `failed` and why.
    let mut wrong = params.clone();
    wrong["password"] = json!("not the password");
    let (code, failed) = call
        .send(
            "POST",
            "/api/v1/databases/test",
            Some(test_body("postgresql", &wrong)),
        )
        .await;
    assert_eq!(code, 502, "{failed}");
    assert_eq!(failed["details"]["status"], "failed", "{failed}");
    assert!(
        failed["details"]["message"].as_str().unwrap().len() > 5,
        "{failed}"
    );
    assert_sentence("failed test", &failed);
    assert!(!failed.to_string().contains("not the password"), "{failed}");

    // Save: the record is Connected with prefer resolved to plaintext, and carries the
    // frontend's type id, the card's test status and the form's field names.
    let (code, created) = call
        .send(
            "POST",
            "/api/v1/databases",
            Some(save_body("Orders", "postgresql", &params)),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let record = wait_status(&call, &id, "Connected").await;
    assert_eq!(record["type"], "postgres");
    assert_eq!(record["databaseType"], "postgresql");
    assert!(FRONTEND_TYPE_IDS.contains(&record["databaseType"].as_str().unwrap()));
    assert_eq!(
        (record["ssl_mode"].as_str(), record["sslMode"].as_str()),
        (Some("prefer"), Some("prefer"))
    );
    assert_eq!(record["effective_ssl_mode"], "disable", "{record}");
    assert_eq!(record["lastTestStatus"], "success", "{record}");
    assert!(record["lastTestedAt"].is_string(), "{record}");
    assert!(
        record["status_message"]
            .as_str()
            .unwrap()
            .contains("without TLS"),
        "{record}"
    );
    let cr = ns.api::<Database>().get(&cr_of(&id)).await.unwrap();
    assert_eq!(cr.spec.ssl_mode, Some(SslMode::Prefer));
    assert_eq!(
        cr.status.as_ref().and_then(|s| s.effective_ssl_mode),
        Some(SslMode::Disable)
    );

    // The edit form: `connection.databaseType === 'postgresql'` selects the type, so it
    // fills its params from the record; its "Test" sends them without a password.
    let params = edit_params(&record);
    assert!(params.get("password").is_none());
    let (code, tested) = call
        .send(
            "POST",
            "/api/v1/databases/test",
            Some(test_body("postgresql", &params)),
        )
        .await;
    assert_eq!(
        (code, tested["status"].as_str()),
        (200, Some("connected")),
        "{tested}"
    );
    // ...but the stored password is never sent to a host the edit names.
    let mut moved = params.clone();
    moved["host"] = json!("localhost");
    let (code, refused) = call
        .send(
            "POST",
            "/api/v1/databases/test",
            Some(test_body("postgresql", &moved)),
        )
        .await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(
        refused["details"]["validation_errors"][0]["field"], "password",
        "{refused}"
    );
    assert_sentence("moved host", &refused);

    // Changing the SSL mode in the edit form is saved (the form's sslMode wins over the
    // echoed ssl_mode, which the record lists first).
    let mut edited = params.clone();
    edited["sslMode"] = json!("disable");
    let (code, updated) = call
        .send(
            "PUT",
            &format!("/api/v1/databases/{id}"),
            Some(save_body("Orders", "postgresql", &edited)),
        )
        .await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["ssl_mode"], "disable", "{updated}");
    assert_eq!(updated["has_password"], true);

    // Re-testing a record that fails is a non-2xx too (the card shows "Connection failed").
    let mut bad = save_body("Broken", "postgresql", &pg_form_params("wrong"));
    bad["ssl_mode"] = json!("disable");
    let (code, broken) = call.send("POST", "/api/v1/databases", Some(bad)).await;
    assert_eq!(code, 201, "{broken}");
    let broken_id = broken["id"].as_str().unwrap();
    let failed_record = wait_status(&call, broken_id, "Failed").await;
    assert_eq!(failed_record["lastTestStatus"], "failed");
    let (code, retest) = call
        .send("POST", &format!("/api/v1/databases/{broken_id}/test"), None)
        .await;
    assert_eq!(
        (code, retest["details"]["status"].as_str()),
        (502, Some("failed")),
        "{retest}"
    );
    assert_sentence("failed re-test", &retest);

    // MySQL's "Use SSL" toggle reaches the CRD; turning it off in the edit form too.
    let s = stack();
    let maria = json!({"host": s.get("STACK_MARIADB_HOST"), "port": s.get("STACK_MARIADB_PORT").parse::<i64>().unwrap(),
        "database": s.get("STACK_DB_NAME"), "username": s.get("STACK_DB_USER"), "password": pw, "ssl": true});
    let (code, m) = call
        .send(
            "POST",
            "/api/v1/databases",
            Some(save_body("Shop", "mysql", &maria)),
        )
        .await;
    assert_eq!(code, 201, "{m}");
    assert_eq!(
        (m["ssl"].as_bool(), m["ssl_mode"].as_str()),
        (Some(true), Some("require")),
        "{m}"
    );
    assert_eq!(m["databaseType"], "mysql");
    let mid = m["id"].as_str().unwrap().to_string();
    let mcr = ns.api::<Database>().get(&cr_of(&mid)).await.unwrap();
    assert_eq!(mcr.spec.ssl_mode, Some(SslMode::Require));
    let mut off = edit_params(&m);
    off["ssl"] = json!(false);
    let (code, m) = call
        .send(
            "PUT",
            &format!("/api/v1/databases/{mid}"),
            Some(save_body("Shop", "mysql", &off)),
        )
        .await;
    assert_eq!((code, m["ssl"].as_bool()), (200, Some(false)), "{m}");
    assert_eq!(m["ssl_mode"], "disable");
    wait_status(&call, &mid, "Connected").await;

    // SQL Server's defaults (encrypt on, certificate not trusted) are refused by name rather
    // than silently sent unencrypted or unverified.
    let mssql = json!({"host": "sql.example", "port": 1433, "database": "d", "username": "u",
        "password": "p", "encrypt": true, "trustServerCertificate": false});
    let (code, refused) = call
        .send(
            "POST",
            "/api/v1/databases",
            Some(save_body("Mssql", "sqlserver", &mssql)),
        )
        .await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(
        refused["details"]["validation_errors"][0]["field"],
        "trust_server_certificate"
    );
    assert_sentence("sqlserver", &refused);

    // More connections than a page: `getAll()` sends no paging parameters and sees them all.
    for n in 0..22 {
        let mut b = save_body(&format!("extra-{n}"), "postgresql", &pg_form_params(pw));
        b["ssl_mode"] = json!("disable");
        let (code, body) = call.send("POST", "/api/v1/databases", Some(b)).await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, all) = call.send("GET", "/api/v1/databases", None).await;
    assert_eq!(code, 200, "{all}");
    assert_eq!(all["databases"].as_array().unwrap().len(), 25);
    assert_eq!(all["total"], 25);
    let (_, page) = call
        .send("GET", "/api/v1/databases?page=2&page_size=20", None)
        .await;
    assert_eq!(page["databases"].as_array().unwrap().len(), 5, "{page}");
    let (code, page) = call
        .send("GET", "/api/v1/databases?page_size=10", None)
        .await;
    assert_eq!(
        (code, page["databases"].as_array().unwrap().len()),
        (200, 10)
    );

    // Every error the UI may show reads as a sentence.
    let other = person(&graph).await;
    for (what, c, method, path, body) in [
        (
            "not found",
            &call,
            "GET",
            "/api/v1/databases/00000000-0000-0000-0000-000000000000".to_string(),
            None,
        ),
        (
            "invalid",
            &call,
            "POST",
            "/api/v1/databases".to_string(),
            Some(json!({"name": "x"})),
        ),
        (
            "foreign space",
            &Call {
                space_id: other.space.clone(),
                ..personal(&server, &owner)
            },
            "GET",
            "/api/v1/databases".to_string(),
            None,
        ),
        (
            "bad paging",
            &call,
            "GET",
            "/api/v1/databases?page=0".to_string(),
            None,
        ),
        (
            "not ready",
            &call,
            "POST",
            format!("/api/v1/databases/{broken_id}/query"),
            Some(json!({"query": "SELECT 1", "params": {}})),
        ),
    ] {
        let (code, body) = c.send(method, path.as_str(), body).await;
        assert!(code >= 400, "{what}: {code} {body}");
        assert_sentence(what, &body);
    }
    let (code, unauth) = Call {
        token: "nope".into(),
        ..personal(&server, &owner)
    }
    .send("GET", "/api/v1/databases", None)
    .await;
    assert_eq!(code, 401);
    assert_sentence("unauthorized", &unauth);
}

/// The notebook's picker and the schema browser with a SELECT-only account, the usual way to
/// give Aether a database: foreign keys come from the catalogs the user can read.
#[tokio::test]
async fn frontend_schema_reads_foreign_keys_and_row_counts_as_a_select_only_user() {
    let (ns, _ctl, server, port) = setup("feschema").await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);
    let t = unique("fk").replace('-', "_");
    let ro_user = format!("{t}_ro");
    let ro_password = "sel3ct only/pw";

    // PostgreSQL: parent and child owned by the app user, the reader may only SELECT them.
    let mut app = sqlx::PgConnection::connect(stack().get("STACK_PG_URL"))
        .await
        .unwrap();
    let mut pg_admin = sqlx::PgConnection::connect(&crate::support::pg_admin_db_url())
        .await
        .unwrap();
    for s in [
        format!("CREATE TABLE {t}_parent (id int PRIMARY KEY)"),
        format!(
            "CREATE TABLE {t}_child (id int PRIMARY KEY, parent_id int REFERENCES {t}_parent(id), note text)"
        ),
        format!("INSERT INTO {t}_parent SELECT generate_series(1, 3)"),
        format!("ANALYZE {t}_parent"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut app)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for s in [
        format!("CREATE ROLE {ro_user} LOGIN PASSWORD '{ro_password}'"),
        format!("GRANT SELECT ON {t}_parent, {t}_child TO {ro_user}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut pg_admin)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // MariaDB: the same with a SELECT-only user.
    let mut maria = sqlx::MySqlConnection::connect(stack().get("STACK_MARIADB_ADMIN_URL"))
        .await
        .unwrap();
    let db = stack().get("STACK_DB_NAME");
    for s in [
        format!("CREATE TABLE {db}.{t}_parent (id int PRIMARY KEY) ENGINE=InnoDB"),
        format!(
            "CREATE TABLE {db}.{t}_child (id int PRIMARY KEY, parent_id int, FOREIGN KEY (parent_id) REFERENCES {db}.{t}_parent(id)) ENGINE=InnoDB"
        ),
        format!("CREATE USER '{ro_user}'@'%' IDENTIFIED BY '{ro_password}'"),
        format!("GRANT SELECT ON {db}.{t}_parent TO '{ro_user}'@'%'"),
        format!("GRANT SELECT ON {db}.{t}_child TO '{ro_user}'@'%'"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut maria)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let s = stack();
    let mut pg_body = save_body(
        "Reader",
        "postgresql",
        &json!({"host": s.get("STACK_PG_HOST"),
        "port": s.get("STACK_PG_PORT").parse::<i64>().unwrap(), "database": db, "username": ro_user,
        "password": ro_password, "sslMode": "prefer"}),
    );
    pg_body["readonly"] = json!(true);
    let maria_body = save_body(
        "Maria reader",
        "mysql",
        &json!({"host": s.get("STACK_MARIADB_HOST"),
        "port": s.get("STACK_MARIADB_PORT").parse::<i64>().unwrap(), "database": db, "username": ro_user,
        "password": ro_password, "ssl": false}),
    );
    let mut ids = Vec::new();
    for body in [pg_body, maria_body] {
        let (code, created) = call.send("POST", "/api/v1/databases", Some(body)).await;
        assert_eq!(code, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        wait_status(&call, &id, "Connected").await;
        ids.push(id);
    }
    let instance = format!("dbhub-{}", owner.space);
    wait_served(
        &ns,
        &instance,
        &ids.iter().map(|i| cr_of(i)).collect::<Vec<_>>(),
    )
    .await;
    let _hub = serve_instance(&ns, &instance, port).await;

    for (id, schema) in [(&ids[0], "public"), (&ids[1], db)] {
        // TableDetails / SchemaBrowser: `getTableColumns(id, table, schema)`.
        let (code, cols) = call
            .send(
                "GET",
                &format!("/api/v1/databases/{id}/tables/{t}_child/columns?schema={schema}"),
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
                .unwrap_or_else(|| panic!("{name} missing: {cols}"))
        };
        assert_eq!(col("parent_id")["isForeignKey"], true, "{schema}: {cols}");
        assert_eq!(col("id")["isPrimaryKey"], true, "{schema}: {cols}");
        assert_eq!(col("id")["isForeignKey"], false, "{schema}: {cols}");

        // DatabaseSource: `response.data?.tables`, `table.rowCount.toLocaleString()` only when
        // present.
        let (code, tables) = call
            .send("GET", &format!("/api/v1/databases/{id}/tables"), None)
            .await;
        assert_eq!(code, 200, "{tables}");
        for table in tables["tables"].as_array().unwrap() {
            match table.get("rowCount") {
                Some(n) => assert!(n.is_i64() && *n == table["row_count"], "{table}"),
                None => assert!(table["row_count"].is_null(), "{table}"),
            }
        }
        assert!(
            tables["tables"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == format!("{t}_parent")),
            "{tables}"
        );

        // The query console sends `{query, params: {}}`; a SQL error reads as a sentence.
        let (code, out) = query(
            &call,
            id,
            json!({"query": format!("SELECT count(*) AS n FROM {t}_parent"), "params": {}}),
        )
        .await;
        assert_eq!(code, 200, "{out}");
        assert_eq!(out["columns"], json!(["n"]), "{out}");
        let (code, err) = query(
            &call,
            id,
            json!({"query": "SELECT * FROM no_such_table_here", "params": {}}),
        )
        .await;
        assert_eq!(code, 422, "{err}");
        assert_sentence("sql error", &err);
        let (code, refused) = query(
            &call,
            id,
            json!({"query": format!("DELETE FROM {t}_parent"), "params": {}}),
        )
        .await;
        assert_eq!(
            (code, refused["code"].as_str()),
            (403, Some("READONLY_VIOLATION")),
            "{refused}"
        );
        assert_sentence("read-only refusal", &refused);
    }
}

/// Aether's docker-compose serves the UI on another origin: the browser's preflight and the
/// real request with the headers `aetherApi.js` sends.
#[tokio::test]
async fn frontend_cross_origin_preflight_and_requests() {
    let ui = "http://localhost:3001";
    let origins = aether_dbhub::http::cors::Origins::parse(ui).unwrap();
    let (_ns, _ctl, server, _port) = setup_with(
        "fecors",
        crate::support::api::Options {
            cors: origins,
            ..Default::default()
        },
    )
    .await;
    let owner = person(&api::graph()).await;
    let call = personal(&server, &owner);
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/databases", server.base);
    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", ui)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-space-type,x-space-id,x-request-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], ui);
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "authorization",
        "content-type",
        "x-space-type",
        "x-space-id",
        "x-request-id",
    ] {
        assert!(allowed.contains(name), "{name} not allowed: {allowed}");
    }
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    // The real request carries the header, errors included (the UI reads their message).
    let res = call.request("GET", "/api/v1/databases", None).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "no Origin, no CORS"
    );
    let res = http
        .get(&url)
        .header("Origin", ui)
        .bearer_auth(&call.token)
        .header("X-Space-Type", "personal")
        .header("X-Space-ID", &owner.space)
        .header("X-Request-ID", "fe-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], ui);
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("location"),
        "{exposed}"
    );
    let res = http.get(&url).header("Origin", ui).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["access-control-allow-origin"], ui);

    // Another origin gets no permission.
    let res = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "DELETE")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

/// Without configured origins the API sends no CORS headers at all.
#[tokio::test]
async fn frontend_no_cors_headers_unless_configured() {
    let (_ns, _ctl, server, _port) = setup("fenocors").await;
    let res = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/databases", server.base),
        )
        .header("Origin", "http://localhost:3001")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_eq!(res.status(), 405);
}
