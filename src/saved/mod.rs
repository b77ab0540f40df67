//! Saved queries (`/saved-queries`): SQL a user keeps for a database of the space, seen by the
//! owner, the space (`public`) or listed teams (`shared`); changed and deleted only by the
//! owner; run through exactly the path of `POST /databases/{id}/query` ([`Queries::run_as`]),
//! which also records the run in the caller's history, linked to the saved query.

pub mod input;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use self::input::{DuplicateInput, SavedQueryInput, copy_name, validate};
use crate::model::saved::{Definition, Filter, Sort, Stats};
use crate::model::{Caller, Error, Listed, Permission, Result, SavedQuery, Visibility};
use crate::queries::{Queries, QueryInput, Ran};
use crate::storage::Store;
use crate::storage::saved::Run;

const WHAT: &str = "saved queries";

/// How to run a saved query (its SQL is its own).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct ExecuteInput {
    /// Bind parameters: as for queries, only an empty list or object (the frontend sends `[]`).
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub parameters: Option<serde_json::Value>,
    /// Alias of `parameters`.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub params: Option<serde_json::Value>,
    /// Row limit for this run; can only lower the database's `max_rows`.
    pub max_rows: Option<i64>,
    /// `read` or `write`, as for queries.
    pub mode: Option<String>,
}

/// A page of saved queries.
pub struct Listing {
    /// The queries on the page.
    pub items: Vec<Listed>,
    /// How many the caller sees with the filter.
    pub total: i64,
}

/// The saved-query use cases.
pub struct SavedQueries {
    store: Store,
    queries: Arc<Queries>,
}

impl SavedQueries {
    /// The use cases over the graph and the query path.
    pub fn new(store: Store, queries: Arc<Queries>) -> Self {
        Self { store, queries }
    }

    /// Saves a query on a database of the caller's space.
    pub async fn create(&self, caller: &Caller, input: &SavedQueryInput) -> Result<Listed> {
        caller.require_on(Permission::Create, WHAT)?;
        let definition = validate(input, None).map_err(Error::Invalid)?;
        self.save_new(caller, definition).await
    }

    async fn save_new(&self, caller: &Caller, definition: Definition) -> Result<Listed> {
        let now = Timestamp::now();
        let q = SavedQuery {
            id: uuid::Uuid::new_v4().to_string(),
            scope: caller.scope.clone(),
            owner_id: caller.user_id.clone(),
            definition,
            stats: Stats::default(),
            created_at: now,
            updated_at: now,
        };
        self.store
            .create_saved_query(&q)
            .await?
            .ok_or(Error::NotFound("database"))?;
        self.get(caller, &q.id).await
    }

    /// What the caller sees, filtered, ordered and paged.
    pub async fn list(
        &self,
        caller: &Caller,
        filter: &Filter,
        sort: Sort,
        skip: i64,
        limit: i64,
    ) -> Result<Listing> {
        caller.require_on(Permission::Read, WHAT)?;
        let page = self
            .store
            .list_saved_queries(&caller.scope, &caller.user_id, filter, sort, skip, limit)
            .await?;
        Ok(Listing {
            items: page.items,
            total: page.total,
        })
    }

    /// One saved query the caller sees (404 for one they do not: never a hint it exists).
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Listed> {
        caller.require_on(Permission::Read, WHAT)?;
        match self
            .store
            .get_saved_query(&caller.scope, id, &caller.user_id)
            .await?
        {
            Some(found) if found.visible => Ok(found.listed),
            _ => Err(Error::NotFound("saved query")),
        }
    }

    /// The query if the caller owns it and may still save queries: 404 when they do not see
    /// it, 403 when they see it but it is someone else's.
    async fn owned(&self, caller: &Caller, id: &str) -> Result<Listed> {
        let found = self.get(caller, id).await?;
        if found.query.owner_id != caller.user_id {
            return Err(Error::Forbidden(
                "Only the owner of a saved query may change or delete it; duplicate it to have your own copy."
                    .into(),
            ));
        }
        caller.require_on(Permission::Create, WHAT)?;
        Ok(found)
    }

    /// A partial update by the owner.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        input: &SavedQueryInput,
    ) -> Result<Listed> {
        let found = self.owned(caller, id).await?;
        let definition = validate(input, Some(&found.query.definition)).map_err(Error::Invalid)?;
        if !self
            .store
            .update_saved_query(&caller.scope, id, &definition, Timestamp::now())
            .await?
        {
            // The query is there (just read), so the database named is not.
            return Err(Error::NotFound("database"));
        }
        self.get(caller, id).await
    }

    /// Removed by the owner (its runs stay in their users' history).
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        self.owned(caller, id).await?;
        if self.store.delete_saved_query(&caller.scope, id).await? {
            Ok(())
        } else {
            Err(Error::NotFound("saved query"))
        }
    }

    /// Runs it as `POST /databases/{id}/query` would run its SQL for the caller, then counts
    /// the run into its statistics.
    pub async fn execute(
        &self,
        caller: &Caller,
        id: &str,
        input: &ExecuteInput,
        on_budget: impl FnOnce(Duration),
    ) -> Result<(Listed, Ran)> {
        let found = self.get(caller, id).await?;
        let definition = &found.query.definition;
        let query = QueryInput {
            query: Some(definition.query.clone()),
            params: input.params.clone(),
            parameters: input.parameters.clone(),
            max_rows: input.max_rows,
            mode: input.mode.clone(),
        };
        let ran = self
            .queries
            .run_as(caller, &definition.database_id, &query, Some(id), on_budget)
            .await?;
        let run = Run {
            user_id: &caller.user_id,
            duration_ms: ran.output.duration_ms,
            row_count: ran.output.row_count,
            at: Timestamp::now(),
        };
        if let Err(e) = self
            .store
            .saved_query_executed(&caller.scope, id, &run)
            .await
        {
            tracing::warn!(error = %e, saved_query.id = id, "could not count the run into the saved query's statistics");
        }
        Ok((found, ran))
    }

    /// A private copy owned by the caller.
    pub async fn duplicate(
        &self,
        caller: &Caller,
        id: &str,
        input: &DuplicateInput,
    ) -> Result<Listed> {
        let found = self.get(caller, id).await?;
        caller.require_on(Permission::Create, WHAT)?;
        let mut errs = Vec::new();
        let name = match input
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            Some(n) => input::name(n, &mut errs),
            None => copy_name(&found.query.definition.name),
        };
        if !errs.is_empty() {
            return Err(Error::Invalid(errs));
        }
        let definition = Definition {
            name,
            visibility: Visibility::Private,
            shared_with_teams: Vec::new(),
            ..found.query.definition
        };
        self.save_new(caller, definition).await
    }
}
