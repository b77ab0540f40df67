// The caller's query history, newest first, per space (and per database).
CREATE INDEX aether_dbhub_query_execution_user IF NOT EXISTS FOR (q:QueryExecution) ON (q.tenant_id, q.space_id, q.user_id, q.executed_ns);
