//! The OpenAPI 3.1 document (generated from the handlers' annotations), served at
//! `/api/v1/openapi.json` with a docs page at `/api/v1/docs`, printed by `aether-dbhub openapi`
//! and committed as `openapi/openapi.json` (a test fails on drift).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::databases::{self, check, dto};
use super::{query, schema};

/// The space every databases call acts in.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: the extractor reads the headers
pub struct SpaceHeaders {
    /// `personal` or `organization`.
    #[param(rename = "X-Space-Type")]
    x_space_type: String,
    /// The space id (for organization spaces also an organization id).
    #[param(rename = "X-Space-ID")]
    x_space_id: String,
}

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

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Aether databases API", description = "Register database connections per space and reach them through DBHub."),
    paths(databases::list, databases::create, databases::read, databases::update, databases::remove,
          check::test_unsaved, check::test_saved, query::run, query::database_history,
          query::space_history, schema::schema, schema::tables, schema::columns),
    components(schemas(dto::DatabaseInput, dto::DatabaseRecord, dto::DatabaseList, check::TestInput,
                       check::TestResult, crate::error::Problem, crate::error::FieldError,
                       query::QueryInput, query::QueryOutput, query::StatementOutput,
                       query::HistoryEntry, query::HistoryPage, schema::SchemaListing,
                       schema::Table, schema::TableList, schema::Column, schema::ColumnList)),
    modifiers(&BearerAuth),
    tags((name = "databases", description = "Database connections of a space"),
         (name = "queries", description = "SQL through DBHub and the caller's query history"),
         (name = "schema", description = "Schemas, tables and columns through DBHub"))
)]
pub struct ApiDoc;

/// The document as pretty JSON (what is committed).
pub fn json() -> String {
    ApiDoc::openapi()
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
    fn document_is_3_1_with_every_route_and_the_bearer_scheme() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for p in [
            "/api/v1/databases",
            "/api/v1/databases/test",
            "/api/v1/databases/{id}",
            "/api/v1/databases/{id}/test",
            "/api/v1/databases/{id}/query",
            "/api/v1/databases/{id}/schema",
            "/api/v1/databases/{id}/tables",
            "/api/v1/databases/{id}/tables/{table}/columns",
            "/api/v1/databases/{id}/history",
            "/api/v1/query-history",
        ] {
            assert!(doc["paths"].get(p).is_some(), "{p} missing");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let params = doc["paths"]["/api/v1/databases"]["get"]["parameters"].to_string();
        assert!(
            params.contains("X-Space-Type") && params.contains("X-Space-ID"),
            "{params}"
        );
    }
}
