//! The caller's own query history: one [`Execution`] per run, read back newest first with a
//! keyset cursor (`executed_ns`, `id`; opaque hex to clients).

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Queries;
use crate::model::{Caller, Database, Error, Execution, FieldError, Permission, Result};
use crate::storage::history::Cursor;

/// `?limit=50&cursor=…`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Runs per page, 1-100 (default 50).
    #[param(value_type = Option<i64>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of the caller's history, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    /// Runs, newest first.
    pub history: Vec<Execution>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A run about to start: `rejected` until it gets further.
pub(super) fn started(caller: &Caller, db: &Database, sql: &str) -> Execution {
    let now = Timestamp::now();
    Execution {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: caller.scope.tenant_id.clone(),
        space_id: caller.scope.space_id.clone(),
        database_id: db.id.clone(),
        database_name: db.settings.name.clone(),
        user_id: caller.user_id.clone(),
        statement: sql.to_string(),
        status: "rejected".into(),
        error: String::new(),
        row_count: 0,
        truncated: false,
        duration_ms: 0,
        executed_at: now.to_string(),
        executed_ns: i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX),
        saved_query_id: None,
    }
}

fn parse(p: &HistoryParams) -> Result<(i64, Option<Cursor>)> {
    let limit = match p.limit.as_deref().map(str::trim) {
        None | Some("") => 50,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                Error::Invalid(vec![FieldError::new(
                    "limit",
                    "a whole number from 1 to 100",
                )])
            })?,
    };
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            Error::Invalid(vec![FieldError::new(
                "cursor",
                "not a cursor this API returned; start without one",
            )])
        })?),
    };
    Ok((limit, after))
}

impl Queries {
    /// The caller's runs on database `id` (when given) or across the space.
    pub async fn history(
        &self,
        caller: &Caller,
        id: Option<&str>,
        p: &HistoryParams,
    ) -> Result<HistoryPage> {
        caller.require(Permission::Read)?;
        // The caller's runs still queued are written first: one sees one's own last query.
        self.flush_history().await;
        if let Some(id) = id {
            self.registry.get(caller, id).await?;
        }
        let (limit, after) = parse(p)?;
        let mut runs = self
            .store
            .list_executions(
                &caller.scope,
                &caller.user_id,
                id.unwrap_or_default(),
                after.as_ref(),
                limit + 1,
            )
            .await?;
        let more = runs.len() as i64 > limit;
        runs.truncate(limit as usize);
        let next_cursor = more.then(|| runs.last()).flatten().map(|r| {
            Cursor {
                executed_ns: r.executed_ns,
                id: r.id.clone(),
            }
            .encode()
        });
        Ok(HistoryPage {
            history: runs,
            next_cursor,
        })
    }
}
