use super::*;

fn db(name: &str, labels: serde_json::Value, spec: serde_json::Value) -> Database {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "Database",
        "metadata": {"name": name, "namespace": "ns", "labels": labels}, "spec": spec
    }))
    .unwrap()
}

fn inst(spec: serde_json::Value) -> DBHubInstanceSpec {
    serde_json::from_value(spec).unwrap()
}

fn pg() -> serde_json::Value {
    serde_json::json!({"type": "postgres", "host": "h", "credentialsRef": {"name": "s"}})
}

#[test]
fn selector_matches_labels_and_names_together() {
    let a = db("a", serde_json::json!({"env": "prod"}), pg());
    let b = db("b", serde_json::json!({"env": "dev"}), pg());
    let none = inst(serde_json::json!({}));
    assert!(selects(&none, &a) && selects(&none, &b));
    let labels = inst(serde_json::json!({"databaseSelector": {"matchLabels": {"env": "prod"}}}));
    assert!(selects(&labels, &a) && !selects(&labels, &b));
    let names = inst(serde_json::json!({"databaseSelector": {"matchNames": ["b"]}}));
    assert!(!selects(&names, &a) && selects(&names, &b));
    let both = inst(
        serde_json::json!({"databaseSelector": {"matchLabels": {"env": "prod"}, "matchNames": ["b"]}}),
    );
    assert!(!selects(&both, &a) && !selects(&both, &b));
}

#[test]
fn ids_are_safe_unique_and_deterministic() {
    let e = entries(["a.b", "a-b", "orders-pg", "a_b", "9lives", "a-b-write"]);
    let ids: Vec<&str> = e.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "db_9lives",
            "a_b",
            "a_b_write_2",
            "a_b_2",
            "a_b_3",
            "orders_pg"
        ]
    );
    assert_eq!(
        (e[5].env.as_str(), e[5].write_id.as_str()),
        ("DBHUB_DSN_ORDERS_PG", "orders_pg_write")
    );
    assert_eq!(e[5].write_env, "DBHUB_DSN_ORDERS_PG_WRITE");
    let again = entries(["orders-pg", "a_b", "9lives", "a-b", "a.b", "a-b-write"]);
    assert_eq!(e, again);
    let all: Vec<&str> = e
        .iter()
        .flat_map(|e| [e.id.as_str(), e.write_id.as_str()])
        .collect();
    let unique: std::collections::BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "{all:?}");
    for id in all {
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{id}"
        );
    }
}

#[test]
fn render_emits_lazy_sources_and_both_tools_with_policy() {
    let spec = inst(serde_json::json!({"defaultPolicy": {"readonly": true, "maxRows": 1000}}));
    let a = db("orders-pg", serde_json::json!({}), pg());
    let mut rw = pg();
    rw["readonly"] = serde_json::json!(false);
    rw["maxRows"] = serde_json::json!(50);
    let b = db("writable", serde_json::json!({}), rw);
    let c = db(
        "lite",
        serde_json::json!({}),
        serde_json::json!({"type": "sqlite", "database": "/x.db"}),
    );
    let es = entries(["orders-pg", "writable", "lite"]);
    let find = |n: &str| es.iter().find(|e| e.name == n).unwrap();
    let text = render(
        &spec,
        &[
            (&a, find("orders-pg")),
            (&b, find("writable")),
            (&c, find("lite")),
        ],
    )
    .unwrap();

    let parsed: toml::Value = toml::from_str(&text).unwrap();
    let sources = parsed["sources"].as_array().unwrap();
    assert_eq!(
        sources.len(),
        4,
        "the writable database gets a second source"
    );
    let s0 = sources[0].as_table().unwrap();
    assert_eq!(s0["id"].as_str(), Some("orders_pg"));
    assert_eq!(s0["dsn"].as_str(), Some("${DBHUB_DSN_ORDERS_PG}"));
    assert_eq!(s0["lazy"].as_bool(), Some(true));
    assert_eq!(s0["connection_timeout"].as_integer(), Some(30));
    assert_eq!(s0["query_timeout"].as_integer(), Some(15));
    assert!(
        sources[3].get("query_timeout").is_none(),
        "sqlite has no query timeout"
    );
    let write = sources[2].as_table().unwrap();
    assert_eq!(
        (write["id"].as_str(), write["dsn"].as_str()),
        (Some("writable_write"), Some("${DBHUB_DSN_WRITABLE_WRITE}"))
    );

    let tools = parsed["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 7);
    let exec = |src: &str| {
        tools
            .iter()
            .find(|t| {
                t["name"].as_str() == Some("execute_sql") && t["source"].as_str() == Some(src)
            })
            .unwrap()
    };
    assert_eq!(
        (
            exec("orders_pg")["readonly"].as_bool(),
            exec("orders_pg")["max_rows"].as_integer()
        ),
        (Some(true), Some(1000))
    );
    // Reads of the writable database still go through a read-only tool; writes have their own.
    assert_eq!(
        (
            exec("writable")["readonly"].as_bool(),
            exec("writable")["max_rows"].as_integer()
        ),
        (Some(true), Some(50))
    );
    assert_eq!(
        (
            exec("writable_write")["readonly"].as_bool(),
            exec("writable_write")["max_rows"].as_integer()
        ),
        (Some(false), Some(50))
    );
    assert!(
        !tools
            .iter()
            .any(|t| t["name"].as_str() == Some("search_objects")
                && t["source"].as_str() == Some("writable_write")),
        "schema browsing only on the read-only source"
    );
    assert!(
        tools
            .iter()
            .any(|t| t["name"].as_str() == Some("search_objects")
                && t["source"].as_str() == Some("lite"))
    );
}

#[test]
fn hostile_descriptions_stay_data() {
    let mut spec = pg();
    spec["description"] = serde_json::json!("x\"\n[[sources]]\nid = \"evil\"");
    let a = db("a", serde_json::json!({}), spec);
    let e = entries(["a"]);
    let text = render(&inst(serde_json::json!({})), &[(&a, &e[0])]).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(parsed["sources"].as_array().unwrap().len(), 1);
}

#[test]
fn hash_changes_with_config_or_dsns() {
    let d1 = BTreeMap::from([("A".to_string(), "x".to_string())]);
    let d2 = BTreeMap::from([("A".to_string(), "y".to_string())]);
    assert_eq!(hash("c", &d1), hash("c", &d1));
    assert_ne!(hash("c", &d1), hash("c", &d2));
    assert_ne!(hash("c", &d1), hash("d", &d1));
}
