// The parts of Aether's own graph schema this service reads through (aether-be creates them:
// internal/database/neo4j.go CreateConstraints, migrations/002_add_space_constraints.cypher).
// The local stack applies them so that its Neo4j answers lookups of users and spaces the way
// Aether's does (by index, not by label scan). The service itself never creates them.
CREATE CONSTRAINT user_id_unique IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE;
CREATE CONSTRAINT user_keycloak_id_unique IF NOT EXISTS FOR (u:User) REQUIRE u.keycloak_id IS UNIQUE;
CREATE CONSTRAINT space_id_unique IF NOT EXISTS FOR (s:Space) REQUIRE s.id IS UNIQUE
