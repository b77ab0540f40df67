//! What clients send to save or edit a query, and its validation (Aether's limits: name ≤ 255,
//! description ≤ 2000, query ≤ 100 000 characters, folder ≤ 255).

use serde::Deserialize;

use crate::model::FieldError;
use crate::model::saved::{Definition, Visibility};

/// Create/update body. On update an absent field keeps its value; unknown and read-only fields
/// are ignored (edit forms echo the record back).
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
pub struct SavedQueryInput {
    /// 1-255 characters (required on create).
    pub name: Option<String>,
    /// At most 2000 characters.
    pub description: Option<String>,
    /// The SQL, 1-100 000 characters (required on create).
    pub query: Option<String>,
    /// A database of the same space (required on create; 404 when there is none).
    pub database_id: Option<String>,
    /// `private` (the default: the owner only), `shared` (members of `shared_with_teams`) or
    /// `public` (everyone in the space).
    pub visibility: Option<String>,
    /// Team ids (`(:Team {id})` in Aether's graph) that see a `shared` query; at most 50.
    pub shared_with_teams: Option<Vec<String>>,
    /// Free labels, at most 50 of 1-100 characters.
    pub tags: Option<Vec<String>>,
    /// A folder name, at most 255 characters.
    pub folder: Option<String>,
}

/// `POST /saved-queries/{id}/duplicate`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct DuplicateInput {
    /// The copy's name (default "<name> (copy)").
    pub name: Option<String>,
}

/// Longest name, folder and team id.
pub const MAX_NAME: usize = 255;
const MAX_DESCRIPTION: usize = 2000;
/// Longest SQL text.
pub const MAX_QUERY: usize = 100_000;
const MAX_LIST: usize = 50;
const MAX_TAG: usize = 100;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A name as given: trimmed, 1-255 characters, no control characters.
pub fn name(raw: &str, errs: &mut Vec<FieldError>) -> String {
    let n = raw.trim().to_string();
    if n.is_empty() || chars(&n) > MAX_NAME || n.chars().any(char::is_control) {
        errs.push(FieldError::new(
            "name",
            "required, 1-255 characters, no control characters",
        ));
    }
    n
}

/// A list of labels: trimmed, de-duplicated, each 1-`max` characters, at most 50.
fn labels(field: &str, raw: &[String], max: usize, errs: &mut Vec<FieldError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in raw {
        let t = item.trim();
        if t.is_empty() || chars(t) > max || t.chars().any(char::is_control) {
            errs.push(FieldError::new(
                field,
                format!("each entry must be 1-{max} characters without control characters"),
            ));
            return out;
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    if out.len() > MAX_LIST {
        errs.push(FieldError::new(
            field,
            format!("at most {MAX_LIST} entries"),
        ));
    }
    out
}

/// Validates `input` on its own (create) or over `base` (update: absent fields keep theirs).
pub fn validate(
    input: &SavedQueryInput,
    base: Option<&Definition>,
) -> Result<Definition, Vec<FieldError>> {
    let mut errs = Vec::new();
    let pick = |v: &Option<String>, old: Option<&String>| -> String {
        v.clone().or_else(|| old.cloned()).unwrap_or_default()
    };
    let name = name(&pick(&input.name, base.map(|b| &b.name)), &mut errs);
    let description = pick(&input.description, base.map(|b| &b.description))
        .trim()
        .to_string();
    if chars(&description) > MAX_DESCRIPTION {
        errs.push(FieldError::new("description", "at most 2000 characters"));
    }
    let query = pick(&input.query, base.map(|b| &b.query))
        .trim()
        .to_string();
    if query.is_empty() || chars(&query) > MAX_QUERY {
        errs.push(FieldError::new(
            "query",
            "required, 1-100000 characters of SQL",
        ));
    }
    let database_id = pick(&input.database_id, base.map(|b| &b.database_id))
        .trim()
        .to_string();
    if database_id.is_empty() {
        errs.push(FieldError::new(
            "database_id",
            "required: the database the query runs on",
        ));
    }
    let visibility = match (&input.visibility, base) {
        (Some(v), _) => Visibility::parse(v).unwrap_or_else(|| {
            errs.push(FieldError::new(
                "visibility",
                "one of private, shared, public",
            ));
            Visibility::Private
        }),
        (None, Some(b)) => b.visibility,
        (None, None) => Visibility::Private,
    };
    let teams = match (&input.shared_with_teams, base) {
        (Some(t), _) => labels("shared_with_teams", t, MAX_NAME, &mut errs),
        (None, Some(b)) => b.shared_with_teams.clone(),
        (None, None) => Vec::new(),
    };
    if visibility == Visibility::Shared && teams.is_empty() {
        errs.push(FieldError::new(
            "shared_with_teams",
            "a shared query names at least one team; use private or public otherwise",
        ));
    }
    let tags = match (&input.tags, base) {
        (Some(t), _) => labels("tags", t, MAX_TAG, &mut errs),
        (None, Some(b)) => b.tags.clone(),
        (None, None) => Vec::new(),
    };
    let folder = pick(&input.folder, base.map(|b| &b.folder))
        .trim()
        .to_string();
    if chars(&folder) > MAX_NAME || folder.chars().any(char::is_control) {
        errs.push(FieldError::new(
            "folder",
            "at most 255 characters, no control characters",
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Definition {
        name,
        description,
        query,
        database_id,
        visibility,
        shared_with_teams: teams,
        tags,
        folder,
    })
}

/// The default name of a copy, within the name limit.
pub fn copy_name(original: &str) -> String {
    const SUFFIX: &str = " (copy)";
    let keep = MAX_NAME - SUFFIX.len();
    let base: String = original.chars().take(keep).collect();
    format!("{base}{SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn check(body: Value) -> Result<Definition, Vec<FieldError>> {
        validate(&serde_json::from_value(body).unwrap(), None)
    }

    fn fields(body: Value) -> Vec<String> {
        check(body)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn create_needs_name_query_and_database_and_defaults_to_private() {
        let ok = check(
            json!({"name": " Top ", "query": "SELECT 1", "database_id": "d",
                              "tags": ["a", "a", " b "]}),
        )
        .unwrap();
        assert_eq!(
            (ok.name.as_str(), ok.visibility),
            ("Top", Visibility::Private)
        );
        assert_eq!(ok.tags, ["a", "b"]);
        assert_eq!(fields(json!({})), ["name", "query", "database_id"]);
    }

    #[test]
    fn aether_limits_each_name_their_field() {
        let base = json!({"name": "n", "query": "q", "database_id": "d"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        for (field, value) in [
            ("name", json!("x".repeat(256))),
            ("description", json!("x".repeat(2001))),
            ("query", json!("x".repeat(100_001))),
            ("folder", json!("x".repeat(256))),
            ("visibility", json!("everyone")),
            ("tags", json!([""])),
            (
                "tags",
                json!((0..51).map(|i| i.to_string()).collect::<Vec<_>>()),
            ),
            ("shared_with_teams", json!(["t\u{0}"])),
        ] {
            assert_eq!(
                fields(with(field, value.clone())),
                [field],
                "{field}: {value}"
            );
        }
        assert_eq!(
            fields(with("visibility", json!("shared"))),
            ["shared_with_teams"]
        );
        assert!(
            check(with("name", json!("é".repeat(255)))).is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn update_keeps_what_is_absent() {
        let base = check(json!({"name": "n", "query": "q", "database_id": "d",
                                "visibility": "shared", "shared_with_teams": ["t1"]}))
        .unwrap();
        let edit: SavedQueryInput = serde_json::from_value(
            json!({"query": "SELECT 2", "id": "ignored", "execution_count": 9}),
        )
        .unwrap();
        let v = validate(&edit, Some(&base)).unwrap();
        assert_eq!((v.name.as_str(), v.query.as_str()), ("n", "SELECT 2"));
        assert_eq!(v.shared_with_teams, ["t1"]);
    }

    #[test]
    fn copies_fit_the_name_limit() {
        assert_eq!(copy_name("Top"), "Top (copy)");
        assert_eq!(copy_name(&"é".repeat(255)).chars().count(), 255);
    }
}
