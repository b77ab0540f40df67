//! The databases REST API against real Neo4j, the real apiserver (RBAC on) and, for status, the
//! Database reconciler checking the real PostgreSQL.

use dbhub_operator::crd::Database;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::support::api::{self, Call, ISSUER, person, personal, serve, wait_status};
use crate::support::kube::{TestNamespace, nobody};
use crate::support::{logs, stack};

fn pg_body(name: &str) -> Value {
    let s = stack();
    json!({"name": name, "type": "postgresql", "host": s.get("STACK_PG_HOST"), "port": s.get("STACK_PG_PORT"),
           "database": s.get("STACK_DB_NAME"), "username": s.get("STACK_DB_USER"), "password": s.hostile_password(),
           "ssl_mode": "disable", "description": "orders", "labels": {"team": "a"}})
}

#[tokio::test]
async fn api_crud_round_trip_with_cr_secret_and_status() {
    let ns = TestNamespace::new("apicrud").await;
    let _ctl = crate::support::operator::start(&ns.name).await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);

    let (code, created) = call
        .send("POST", "/api/v1/databases", Some(pg_body("orders")))
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["type"], "postgres");
    assert!(
        !created.to_string().contains(stack().hostile_password()),
        "password in a response"
    );
    assert_eq!(created["status"], "Pending");
    assert_eq!(created["has_password"], true);
    assert_eq!(
        (created["space_id"].as_str(), created["tenant_id"].as_str()),
        (Some(owner.space.as_str()), Some(owner.tenant.as_str()))
    );
    assert!(created.get("password").is_none());

    // The CR and its Secret, labelled, the Secret owned by the CR.
    let cr_name = format!("db-{}", id.replace('-', ""));
    let cr = ns
        .api::<Database>()
        .get(&cr_name)
        .await
        .expect("the Database CR");
    let labels = cr.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "aether-dbhub");
    assert_eq!(labels["aether.tas.io/space-id"], owner.space);
    assert_eq!(labels["aether.tas.io/tenant-id"], owner.tenant);
    assert_eq!(labels["dbhub.tas.io/database-id"], id);
    let secret = ns
        .api::<Secret>()
        .get(&format!("{cr_name}-credentials"))
        .await
        .expect("the Secret");
    let owners = secret.metadata.owner_references.clone().unwrap();
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].uid.as_str()),
        ("Database", cr.metadata.uid.as_deref().unwrap())
    );

    // The reconciler's verdict shows on the record (and on the graph node).
    let connected = wait_status(&call, &id, "Connected").await;
    crate::support::operator::assert_no_leak(&ns).await;
    assert!(connected["last_checked"].is_string());

    // The frontend's edit form echoes the record back without a password: only the CR changes.
    let mut echo = connected.clone();
    echo["description"] = json!("orders, primary");
    echo["status"] = json!("Failed"); // read-only: ignored
    let secret_rv = secret.metadata.resource_version.clone();
    let (code, updated) = call
        .send("PUT", &format!("/api/v1/databases/{id}"), Some(echo))
        .await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["description"], "orders, primary");
    assert_eq!(updated["status"], "Connected");
    let secret_after = ns
        .api::<Secret>()
        .get(&format!("{cr_name}-credentials"))
        .await
        .unwrap();
    assert_eq!(
        secret_after.metadata.resource_version, secret_rv,
        "no password → Secret untouched"
    );
    assert_eq!(
        ns.api::<Database>()
            .get(&cr_name)
            .await
            .unwrap()
            .spec
            .description
            .as_deref(),
        Some("orders, primary")
    );

    // A new password only touches the Secret.
    let generation = ns
        .api::<Database>()
        .get(&cr_name)
        .await
        .unwrap()
        .metadata
        .generation;
    let (code, _) = call
        .send(
            "PUT",
            &format!("/api/v1/databases/{id}"),
            Some(json!({"password": "n3w/pass"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        ns.api::<Database>()
            .get(&cr_name)
            .await
            .unwrap()
            .metadata
            .generation,
        generation
    );
    let data = ns
        .api::<Secret>()
        .get(&format!("{cr_name}-credentials"))
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data["password"].0, b"n3w/pass");

    // Listing without paging parameters (as the frontend does): the whole list, up to 1000.
    let (code, list) = call.send("GET", "/api/v1/databases", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            list["total"].as_i64(),
            list["page"].as_i64(),
            list["page_size"].as_i64()
        ),
        (Some(1), Some(1), Some(1000))
    );

    let (code, _) = call
        .send("DELETE", &format!("/api/v1/databases/{id}"), None)
        .await;
    assert_eq!(code, 204);
    assert!(
        ns.api::<Database>()
            .get_opt(&cr_name)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ns.api::<Secret>()
            .get_opt(&format!("{cr_name}-credentials"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        call.send("GET", &format!("/api/v1/databases/{id}"), None)
            .await
            .0,
        404
    );
    assert_no_password_anywhere(&graph, &owner.tenant).await;
}

async fn assert_no_password_anywhere(graph: &neo4rs::Graph, tenant: &str) {
    let pw = stack().hostile_password();
    assert!(!logs::text().contains(pw), "password in the logs");
    let mut rows = graph
        .execute(
            neo4rs::query("MATCH (d:Database {tenant_id: $tenant_id}) RETURN properties(d) AS p")
                .param("tenant_id", tenant),
        )
        .await
        .unwrap();
    while let Some(row) = rows.next().await.unwrap() {
        let p: neo4rs::BoltType = row.get("p").unwrap();
        assert!(
            !format!("{p:?}").contains(pw),
            "password in a graph property"
        );
    }
}

#[tokio::test]
async fn api_failed_cr_step_leaves_no_secret_and_no_node() {
    let ns = TestNamespace::new("apiundo").await;
    // The service's identity may write Secrets here but not Database CRs: the CR step fails.
    let role: Role = serde_json::from_value(json!({"metadata": {"name": "secrets-only"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "patch", "delete", "list"]},
                   {"apiGroups": ["dbhub.tas.io"], "resources": ["dbhubinstances"], "verbs": ["get", "create", "patch"]}]})).unwrap();
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "secrets-only"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secrets-only"},
        "subjects": [{"kind": "User", "name": "stack-nobody"}]})).unwrap();
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    crate::support::crds::ensure_installed().await;
    let server = serve(&ns.name, nobody().await).await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);

    let (code, body) = call
        .send("POST", "/api/v1/databases", Some(pg_body("undo")))
        .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    assert!(
        ns.api::<Secret>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|s| !s
                .metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .ends_with("-credentials")),
        "orphan Secret"
    );
    assert!(
        ns.api::<Database>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let (_, list) = call.send("GET", "/api/v1/databases", None).await;
    assert_eq!(list["total"], 0, "no graph node");
}

#[tokio::test]
async fn api_refuses_bad_tokens_with_401() {
    let ns = TestNamespace::new("apiauth").await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let p = person(&graph).await;
    let rsa_token = {
        let dir = std::env::temp_dir().join(crate::support::unique("rsa"));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("k.pem");
        assert!(
            std::process::Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(&key)
                .arg("2048")
                .output()
                .unwrap()
                .status
                .success()
        );
        let pem = std::fs::read(&key).unwrap();
        let claims = json!({"sub": p.sub, "iss": ISSUER, "exp": jsonwebtoken::get_current_timestamp() + 3600});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap()
    };
    let b64 = |v: Value| {
        use std::fmt::Write;
        let raw = v.to_string();
        // base64url without padding, by hand (no extra dependency for one test).
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in raw.as_bytes().chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                let _ = out.write_char(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let none_token = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(
            json!({"sub": p.sub, "iss": ISSUER, "exp": jsonwebtoken::get_current_timestamp() + 3600})
        )
    );
    let cases = [
        ("no token", None),
        ("garbage", Some("not.a.jwt".to_string())),
        ("expired", Some(api::token_with(&p.sub, ISSUER, -600))),
        (
            "wrong issuer",
            Some(api::token_with(&p.sub, "https://evil.example", 3600)),
        ),
        ("alg none", Some(none_token)),
        ("RS256 to an HS256 config", Some(rsa_token)),
        (
            "not valid for another hour (nbf)",
            Some(api::signed(
                &json!({"sub": p.sub, "iss": ISSUER, "exp": now + 7200, "nbf": now + 3600}),
            )),
        ),
        (
            "issued an hour from now (iat)",
            Some(api::signed(
                &json!({"sub": p.sub, "iss": ISSUER, "exp": now + 7200, "iat": now + 3600}),
            )),
        ),
    ];
    for (what, token) in cases {
        let mut req = reqwest::Client::new()
            .get(format!("{}/api/v1/databases", server.base))
            .header("x-space-type", "personal")
            .header("x-space-id", &p.space);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED", "{what}");
    }
    // And the valid one passes.
    assert_eq!(
        personal(&server, &p)
            .send("GET", "/api/v1/databases", None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn api_space_context_is_required_and_resolved() {
    let ns = TestNamespace::new("apispace").await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let (a, b) = (person(&graph).await, person(&graph).await);
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/databases", server.base))
        .bearer_auth(api::token(&a.sub))
        .header("x-request-id", "rid-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(
        body.to_string().contains("Space context required"),
        "{body}"
    );
    assert_eq!(body["request_id"], "rid-7");
    // Someone else's personal space: 403; an unknown organization space: 404.
    let other = Call {
        api: &server,
        token: api::token(&a.sub),
        space_type: "personal",
        space_id: b.space.clone(),
    };
    assert_eq!(other.send("GET", "/api/v1/databases", None).await.0, 403);
    let unknown = Call {
        api: &server,
        token: api::token(&a.sub),
        space_type: "organization",
        space_id: "nope".into(),
    };
    assert_eq!(unknown.send("GET", "/api/v1/databases", None).await.0, 404);
}

/// Memberships are remembered for `--space-cache-ttl`: a member removed in the graph keeps their
/// standing at most that long, then is refused; with 0 the removal counts at once.
#[tokio::test]
async fn api_space_cache_forgets_a_removed_member_within_its_ttl() {
    let ns = TestNamespace::new("apicache").await;
    let ttl = std::time::Duration::from_secs(2);
    let cached = api::serve_opts(
        &ns.name,
        ns.client.clone(),
        api::Options {
            space_cache_ttl: ttl,
            ..Default::default()
        },
    )
    .await;
    let uncached = api::serve_opts(
        &ns.name,
        ns.client.clone(),
        api::Options {
            space_cache_ttl: std::time::Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    let graph = api::graph();
    let a = person(&graph).await;
    let (space, _) = api::org_space(&graph, &[(&a, "member")]).await;
    let call = |server| Call {
        api: server,
        token: api::token(&a.sub),
        space_type: "organization",
        space_id: space.clone(),
    };
    assert_eq!(
        call(&cached).send("GET", "/api/v1/databases", None).await.0,
        200
    );
    assert_eq!(
        call(&uncached)
            .send("GET", "/api/v1/databases", None)
            .await
            .0,
        200
    );
    let removed_at = std::time::Instant::now();
    graph
        .run(
            neo4rs::query("MATCH (:User {id: $id})-[m:MEMBER_OF]->(:Space {id: $space}) DELETE m")
                .param("id", a.id.as_str())
                .param("space", space.as_str()),
        )
        .await
        .unwrap();
    let (code, body) = call(&uncached).send("GET", "/api/v1/databases", None).await;
    assert_eq!(
        code, 403,
        "without a cache the removal counts at once: {body}"
    );
    let (code, _) = call(&cached).send("GET", "/api/v1/databases", None).await;
    if removed_at.elapsed() < ttl {
        assert_eq!(
            code, 200,
            "within the TTL the remembered membership still counts"
        );
    }
    tokio::time::sleep(
        ttl.saturating_sub(removed_at.elapsed()) + std::time::Duration::from_millis(100),
    )
    .await;
    let (code, body) = call(&cached).send("GET", "/api/v1/databases", None).await;
    assert_eq!(code, 403, "after the TTL the removal counts: {body}");
}

#[tokio::test]
async fn api_isolation_and_roles() {
    let ns = TestNamespace::new("apiiso").await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let (owner, viewer, member, admin, stranger) = (
        person(&graph).await,
        person(&graph).await,
        person(&graph).await,
        person(&graph).await,
        person(&graph).await,
    );
    let (space, _) = api::org_space(
        &graph,
        &[
            (&owner, "owner"),
            (&viewer, "viewer"),
            (&member, "member"),
            (&admin, "admin"),
        ],
    )
    .await;
    let in_org = |p: &api::Person| Call {
        api: &server,
        token: api::token(&p.sub),
        space_type: "organization",
        space_id: space.clone(),
    };
    let sqlite = |name: &str| json!({"name": name, "type": "sqlite", "path": "/tmp/none.db"});

    let (code, created) = in_org(&owner)
        .send("POST", "/api/v1/databases", Some(sqlite("shared")))
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let one = format!("/api/v1/databases/{id}");

    // Another tenant sees nothing: 404 on every route, never 403.
    let outsider = personal(&server, &stranger);
    for (m, body) in [
        ("GET", None),
        ("PUT", Some(json!({"description": "x"}))),
        ("DELETE", None),
    ] {
        assert_eq!(outsider.send(m, &one, body).await.0, 404, "{m}");
    }
    assert_eq!(
        outsider.send("GET", "/api/v1/databases", None).await.1["total"],
        0
    );

    // Roles: viewer reads only; member creates and updates but does not delete; admin deletes.
    let v = in_org(&viewer);
    assert_eq!(v.send("GET", &one, None).await.0, 200);
    assert_eq!(
        v.send("POST", "/api/v1/databases", Some(sqlite("v")))
            .await
            .0,
        403
    );
    assert_eq!(
        v.send("PUT", &one, Some(json!({"description": "v"})))
            .await
            .0,
        403
    );
    assert_eq!(v.send("DELETE", &one, None).await.0, 403);
    assert_eq!(v.send("POST", &format!("{one}/test"), None).await.0, 403);
    assert_eq!(
        v.send(
            "POST",
            "/api/v1/databases/test",
            Some(json!({"databaseType": "sqlite", "path": "/x.db"}))
        )
        .await
        .0,
        403
    );
    let m = in_org(&member);
    assert_eq!(
        m.send("POST", "/api/v1/databases", Some(sqlite("m")))
            .await
            .0,
        201
    );
    assert_eq!(
        m.send("PUT", &one, Some(json!({"description": "m"})))
            .await
            .0,
        200
    );
    assert_eq!(m.send("DELETE", &one, None).await.0, 403);
    assert_eq!(in_org(&admin).send("DELETE", &one, None).await.0, 204);
}

#[tokio::test]
async fn api_invalid_bodies_are_400_naming_the_field_and_write_nothing() {
    let ns = TestNamespace::new("apibad").await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let p = person(&graph).await;
    let call = personal(&server, &p);
    let with = |patch: Value| {
        let mut b = pg_body("bad");
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let cases = [
        (with(json!({"name": null})), "name"),
        (with(json!({"name": "  "})), "name"),
        (with(json!({"type": "neo4j"})), "type"),
        (with(json!({"type": "redis"})), "type"),
        (with(json!({"host": null})), "host"),
        (with(json!({"host": "a b"})), "host"),
        (with(json!({"port": 0})), "port"),
        (with(json!({"port": 70000})), "port"),
        (with(json!({"port": "abc"})), "port"),
        (with(json!({"type": "mysql", "database": null})), "database"),
        (with(json!({"database": "a/b"})), "database"),
        (with(json!({"username": null})), "username"),
        (with(json!({"password": null})), "password"),
        (with(json!({"ssl_mode": "sometimes"})), "ssl_mode"),
        (
            with(json!({"type": "mysql", "ssl_mode": "verify-full"})),
            "ssl_mode",
        ),
        (with(json!({"max_rows": 0})), "max_rows"),
        (
            with(json!({"connection_timeout": 301})),
            "connection_timeout",
        ),
        (with(json!({"query_timeout": 0})), "query_timeout"),
        (
            json!({"name": "lite", "type": "sqlite", "path": "relative.db"}),
            "path",
        ),
    ];
    assert!(cases.len() >= 15);
    for (body, field) in cases {
        let (code, problem) = call
            .send("POST", "/api/v1/databases", Some(body.clone()))
            .await;
        assert_eq!(code, 400, "{body} → {problem}");
        let fields: Vec<&str> = problem["details"]["validation_errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{body}: expected {field} in {fields:?}"
        );
        assert!(
            !problem.to_string().contains(stack().hostile_password()),
            "the password echoed back"
        );
    }
    let (code, problem) = call
        .send(
            "POST",
            "/api/v1/databases",
            Some(with(json!({"type": "mongodb"}))),
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        problem.to_string().contains("supported are postgres"),
        "{problem}"
    );
    assert_eq!(
        call.send("GET", "/api/v1/databases?page=0", None).await.0,
        400
    );
    assert_eq!(
        call.send("GET", "/api/v1/databases?page_size=101", None)
            .await
            .0,
        400
    );
    assert!(
        ns.api::<Database>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no CR written"
    );
    assert!(
        ns.api::<Secret>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no Secret written"
    );
    assert_eq!(
        call.send("GET", "/api/v1/databases", None).await.1["total"],
        0,
        "no node written"
    );
}

/// Every rejection is problem+json naming what to fix, never echoing what was sent: an
/// oversized body 413, a repeated parameter or an unreadable path segment 400 naming it, a
/// field of the wrong type 400 naming the field, unknown routes 404, wrong methods 405.
#[tokio::test]
async fn api_malformed_requests_are_problem_json_naming_what_to_fix() {
    let ns = TestNamespace::new("apimal").await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let p = person(&graph).await;
    let http = reqwest::Client::new();
    let send = |method: &str, path: &str| {
        http.request(method.parse().unwrap(), format!("{}{path}", server.base))
            .bearer_auth(api::token(&p.sub))
            .header("x-space-type", "personal")
            .header("x-space-id", &p.space)
    };
    async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        assert_eq!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "status {status}"
        );
        (status, res.json().await.unwrap())
    }
    let fields = |problem: &Value| -> Vec<String> {
        problem["details"]["validation_errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["field"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };

    let huge = json!({"name": "big", "description": "x".repeat(10 << 20)});
    let (code, problem) = answer(send("POST", "/api/v1/databases").json(&huge)).await;
    assert_eq!(code, 413, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("1048576 bytes"),
        "{problem}"
    );

    let (code, problem) = answer(send("GET", "/api/v1/databases?page=1&page=2")).await;
    assert_eq!(
        (code, fields(&problem)),
        (400, vec!["page".to_string()]),
        "{problem}"
    );

    let (code, problem) = answer(send("GET", "/api/v1/databases/%FF%FE")).await;
    assert_eq!(
        (code, fields(&problem)),
        (400, vec!["id".to_string()]),
        "{problem}"
    );

    let (code, problem) = answer(send("GET", "/api/v1/no-such-route")).await;
    assert_eq!(code, 404, "{problem}");
    let (code, problem) = answer(send("PATCH", "/api/v1/databases")).await;
    assert_eq!(code, 405, "{problem}");

    let (code, problem) = answer(
        send("POST", "/api/v1/databases")
            .header("content-type", "text/plain")
            .body("name=x"),
    )
    .await;
    assert_eq!(code, 415, "{problem}");

    let secret = "hunter2-never-echoed";
    let mut body = pg_body("typed");
    body["port"] = json!({"nested": secret});
    body["max_rows"] = json!(secret);
    let (code, problem) = answer(send("POST", "/api/v1/databases").json(&body)).await;
    assert_eq!(code, 400, "{problem}");
    assert_eq!(fields(&problem), vec!["max_rows".to_string()], "{problem}");
    assert!(!problem.to_string().contains(secret), "{problem}");

    let (code, problem) = answer(
        send("POST", "/api/v1/databases")
            .header("content-type", "application/json")
            .body(format!("{{\"password\": \"{secret}")),
    )
    .await;
    assert_eq!(code, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{problem}"
    );
    assert!(!problem.to_string().contains(secret), "{problem}");

    assert!(
        ns.api::<Database>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no CR written"
    );
}

#[tokio::test]
async fn api_test_endpoint_takes_the_frontend_body_and_saves_nothing() {
    let ns = TestNamespace::new("apitest").await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let p = person(&graph).await;
    let call = personal(&server, &p);
    let s = stack();
    let body = |ty: &str, port: &str, password: &str| {
        json!({"databaseType": ty, "host": "127.0.0.1", "port": port, "database": s.get("STACK_DB_NAME"),
               "username": s.get("STACK_DB_USER"), "password": password, "sslMode": "disable"})
    };
    let (code, ok) = call
        .send(
            "POST",
            "/api/v1/databases/test",
            Some(body(
                "postgresql",
                s.get("STACK_PG_PORT"),
                s.hostile_password(),
            )),
        )
        .await;
    assert_eq!(code, 200, "{ok}");
    assert_eq!(ok["status"], "connected", "{ok}");
    assert!(ok["latency_ms"].is_number());
    let (_, maria) = call
        .send(
            "POST",
            "/api/v1/databases/test",
            Some(body(
                "mariadb",
                s.get("STACK_MARIADB_PORT"),
                s.hostile_password(),
            )),
        )
        .await;
    assert_eq!(maria["status"], "connected", "{maria}");
    let (code, bad) = call
        .send(
            "POST",
            "/api/v1/databases/test",
            Some(body("postgresql", s.get("STACK_PG_PORT"), "wrong-Pa55")),
        )
        .await;
    assert_eq!(
        code, 502,
        "a failed connection is an error the frontend shows"
    );
    assert_eq!(bad["details"]["status"], "failed");
    assert!(
        bad["details"]["message"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{bad}"
    );
    assert!(!bad.to_string().contains("wrong-Pa55"));
    assert_eq!(
        call.send("GET", "/api/v1/databases", None).await.1["total"],
        0,
        "nothing saved"
    );
    assert!(
        ns.api::<Database>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn api_saved_test_rechecks_now_and_updates_the_record() {
    let ns = TestNamespace::new("apirecheck").await;
    crate::support::crds::ensure_installed().await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let p = person(&graph).await;
    let call = personal(&server, &p);
    let (code, created) = call
        .send("POST", "/api/v1/databases", Some(pg_body("recheck")))
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    // No reconciler runs in this test: the status can only come from the re-check.
    let (code, res) = call
        .send("POST", &format!("/api/v1/databases/{id}/test"), None)
        .await;
    assert_eq!(code, 200, "{res}");
    assert_eq!(res["status"], "connected", "{res}");
    let (_, rec) = call
        .send("GET", &format!("/api/v1/databases/{id}"), None)
        .await;
    assert_eq!(rec["status"], "Connected", "{rec}");
    assert!(rec["last_checked"].is_string());
}

#[tokio::test]
async fn api_serves_its_openapi_document_and_docs_page() {
    let ns = TestNamespace::new("apidoc").await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let doc = reqwest::get(format!("{}/api/v1/openapi.json", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(doc, aether_dbhub::http::openapi::json());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert_eq!(doc, committed);
    let page = reqwest::get(format!("{}/api/v1/docs", server.base))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
}

/// RS256 through a real JWKS endpoint (served here): keys fetched, cached, refreshed on an
/// unknown `kid`; a token signed by a key not in the set is refused.
#[tokio::test]
async fn api_rs256_tokens_verify_against_a_jwks_url() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let dir = std::env::temp_dir().join(crate::support::unique("jwks"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = |name: &str| {
        let path = dir.join(name);
        assert!(
            std::process::Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(&path)
                .arg("2048")
                .output()
                .unwrap()
                .status
                .success()
        );
        EncodingKey::from_rsa_pem(&std::fs::read(&path).unwrap()).unwrap()
    };
    let (good, rogue) = (key("good.pem"), key("rogue.pem"));
    let mut jwk = Jwk::from_encoding_key(&good, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let set = serde_json::to_value(JwkSet { keys: vec![jwk] }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/certs", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let s = set.clone();
            async move { axum::Json(s) }
        }),
    );
    let jwks = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let args = aether_dbhub::config::AuthArgs {
        jwt_issuers: ISSUER.into(),
        jwt_audience: "aether-api".into(),
        jwt_jwks_url: jwks_url,
        jwt_rs256_pem: String::new(),
        jwt_hs256_secret: String::new(),
    };
    let verifier = aether_dbhub::auth::Verifier::from_args(&args).unwrap();
    let sign = |k: &EncodingKey, kid: &str, aud: &str| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        let claims = json!({"sub": "u1", "iss": ISSUER, "aud": aud, "exp": jsonwebtoken::get_current_timestamp() + 600});
        jsonwebtoken::encode(&h, &claims, k).unwrap()
    };
    assert_eq!(
        verifier
            .verify(&sign(&good, "k1", "aether-api"))
            .await
            .unwrap()
            .sub,
        "u1"
    );
    assert!(
        verifier
            .verify(&sign(&good, "k1", "someone-else"))
            .await
            .is_err(),
        "wrong audience"
    );
    assert!(
        verifier
            .verify(&sign(&rogue, "k1", "aether-api"))
            .await
            .is_err(),
        "signed by another key"
    );
    assert!(
        verifier
            .verify(&sign(&rogue, "k9", "aether-api"))
            .await
            .is_err(),
        "unknown kid"
    );
    jwks.abort();

    // The same key configured as a PEM public key instead of a JWKS URL.
    let public = dir.join("good.pub");
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(dir.join("good.pem"))
        .arg("-out")
        .arg(&public)
        .output()
        .unwrap();
    assert!(out.status.success());
    let pem_args = aether_dbhub::config::AuthArgs {
        jwt_jwks_url: String::new(),
        jwt_rs256_pem: public.to_str().unwrap().into(),
        jwt_audience: String::new(),
        ..args
    };
    let pem = aether_dbhub::auth::Verifier::from_args(&pem_args).unwrap();
    assert_eq!(
        pem.verify(&sign(&good, "any", "x")).await.unwrap().sub,
        "u1"
    );
    assert!(pem.verify(&sign(&rogue, "any", "x")).await.is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn api_keeps_one_dbhub_instance_per_space_while_it_has_databases() {
    let ns = TestNamespace::new("apiinst").await;
    crate::support::crds::ensure_installed().await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let graph = api::graph();
    let p = person(&graph).await;
    let call = personal(&server, &p);
    let instance = format!("dbhub-{}", p.space);
    let lite = |name: &str| json!({"name": name, "type": "sqlite", "path": "/tmp/none.db"});
    let (_, a) = call
        .send("POST", "/api/v1/databases", Some(lite("a")))
        .await;
    let (_, b) = call
        .send("POST", "/api/v1/databases", Some(lite("b")))
        .await;
    let hubs = ns.api::<dbhub_operator::crd::DBHubInstance>();
    let hub = hubs
        .get(&instance)
        .await
        .expect("the space's DBHubInstance");
    let selector = hub.spec.database_selector.unwrap().match_labels.unwrap();
    assert_eq!(selector["aether.tas.io/space-id"], p.space);
    assert_eq!(
        hubs.list(&Default::default()).await.unwrap().items.len(),
        1,
        "one instance per space"
    );
    call.send(
        "DELETE",
        &format!("/api/v1/databases/{}", a["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert!(
        hubs.get_opt(&instance).await.unwrap().is_some(),
        "still serving b"
    );
    call.send(
        "DELETE",
        &format!("/api/v1/databases/{}", b["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert!(
        hubs.get_opt(&instance).await.unwrap().is_none(),
        "removed with the space's last database"
    );
}
