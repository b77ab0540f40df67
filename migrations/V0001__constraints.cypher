// Ids are unique; a name is unique within its space. Idempotent (IF NOT EXISTS).
CREATE CONSTRAINT aether_dbhub_database_id IF NOT EXISTS FOR (d:Database) REQUIRE d.id IS UNIQUE;
CREATE CONSTRAINT aether_dbhub_database_space_name IF NOT EXISTS FOR (d:Database) REQUIRE (d.space_id, d.name) IS UNIQUE;
CREATE CONSTRAINT aether_dbhub_query_execution_id IF NOT EXISTS FOR (q:QueryExecution) REQUIRE q.id IS UNIQUE;
CREATE CONSTRAINT aether_dbhub_migration_version IF NOT EXISTS FOR (m:AetherDbhubMigration) REQUIRE m.version IS UNIQUE;
CREATE INDEX aether_dbhub_database_tenant_space IF NOT EXISTS FOR (d:Database) ON (d.tenant_id, d.space_id);
