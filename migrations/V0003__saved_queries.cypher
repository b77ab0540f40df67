// Saved queries: ids unique; listed per space (and per database, for the cascade on delete).
CREATE CONSTRAINT aether_dbhub_saved_query_id IF NOT EXISTS FOR (s:SavedQuery) REQUIRE s.id IS UNIQUE;
CREATE INDEX aether_dbhub_saved_query_space IF NOT EXISTS FOR (s:SavedQuery) ON (s.tenant_id, s.space_id, s.database_id);
// A run of a saved query points at it; history stays when the saved query goes.
CREATE INDEX aether_dbhub_query_execution_saved IF NOT EXISTS FOR (q:QueryExecution) ON (q.saved_query_id)
