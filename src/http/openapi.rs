//! The OpenAPI 3.1 document's root (info, security scheme, tags); each resource's router adds
//! its operations and schemas (utoipa-axum). Served at `/api/v1/openapi.json` with a docs page
//! at `/api/v1/docs`, printed by `aether-dbhub openapi` and committed as `openapi/openapi.json`
//! (a test fails on drift).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The root of the API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Aether databases API", description = "Register database connections per space and reach them through DBHub."),
    modifiers(&BearerAuth),
    tags((name = "databases", description = "Database connections of a space"),
         (name = "queries", description = "SQL through DBHub and the caller's query history"),
         (name = "schema", description = "Schemas, tables and columns through DBHub"),
         (name = "saved-queries", description = "Queries users keep, share and run"))
)]
pub struct ApiDoc;

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    super::api().split_for_parts().1
}

/// The document as pretty JSON (what is committed).
pub fn json() -> String {
    document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
        + "\n"
}

#[cfg(test)]
mod tests {
    /// `openapi/openapi.json` must match the code. Regenerate with
    /// `AETHER_DBHUB_BLESS=1 cargo test --lib committed_openapi`.
    #[test]
    fn committed_openapi_matches_code() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
        let fresh = super::json();
        if std::env::var_os("AETHER_DBHUB_BLESS").is_some() {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            committed == fresh,
            "openapi/openapi.json is stale: AETHER_DBHUB_BLESS=1 cargo test --lib committed_openapi"
        );
    }

    #[test]
    fn every_operation_is_documented_with_the_bearer_scheme_and_space_headers() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 10, "{:?}", paths.keys());
        for (path, ops) in paths {
            for (method, op) in ops.as_object().unwrap() {
                let params = op["parameters"].to_string();
                assert!(
                    params.contains("X-Space-Type") && params.contains("X-Space-ID"),
                    "{method} {path}: {params}"
                );
                for status in ["400", "401", "403", "404", "503"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }
}
