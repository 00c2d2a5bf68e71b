-- Aurora Config schema for TiDB, MySQL 8 and MariaDB 10.6+.
--   mysql -h <host> -P 4000 -u root <database> < database/schema.sql
-- The same schema as the Alembic migrations and database/models.py (a test proves there is no
-- drift). Portable choices: utf8mb4, a primary key on every table, no triggers, no stored
-- procedures, no foreign keys. Key, name and scope columns are utf8mb4_bin (migration 0006): the
-- default utf8mb4 collation of MySQL and MariaDB would hold "Flag" and "flag", or two different
-- emoji, to be one key (TiDB's default is binary already). AUTO_INCREMENT ids are unique but not
-- ordered on TiDB: history is ordered by version and time, never by id.
-- `python -m service migrate` is the alternative: it applies the Alembic migrations and records
-- the revision, so later migrations apply on top. This file records it too, at its end, as
-- stamping the latest revision (0006) would: the service reports 503 (not ready) on a database
-- whose recorded revision is missing or older than the code's.

-- Configurations. service_name NULL is the environment's global value; service_scope holds ''
-- for it, because unique indexes treat NULLs as distinct: two globals with one key must clash.
CREATE TABLE IF NOT EXISTS app_configurations (
    id BIGINT NOT NULL AUTO_INCREMENT,
    config_key VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    environment VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NULL,
    service_scope VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    config_value JSON NOT NULL,
    description VARCHAR(1000) NULL,
    version INTEGER NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    created_by VARCHAR(200) NOT NULL,
    updated_by VARCHAR(200) NOT NULL,
    CONSTRAINT pk_app_configurations PRIMARY KEY (id),
    CONSTRAINT uq_app_configurations_environment_service_scope_config_key
        UNIQUE (environment, service_scope, config_key)
) DEFAULT CHARSET = utf8mb4;

CREATE INDEX ix_app_configurations_environment_config_key
    ON app_configurations (environment, config_key);

CREATE TABLE IF NOT EXISTS feature_flags (
    id BIGINT NOT NULL AUTO_INCREMENT,
    flag_key VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    flag_name VARCHAR(200) NOT NULL,
    description VARCHAR(1000) NULL,
    environment VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    is_enabled BOOL NOT NULL,
    rollout_percentage SMALLINT NOT NULL,
    rules JSON NOT NULL,
    variants JSON NOT NULL,
    prerequisites JSON NOT NULL,
    version INTEGER NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    created_by VARCHAR(200) NOT NULL,
    updated_by VARCHAR(200) NOT NULL,
    CONSTRAINT pk_feature_flags PRIMARY KEY (id),
    CONSTRAINT uq_feature_flags_environment_flag_key UNIQUE (environment, flag_key)
) DEFAULT CHARSET = utf8mb4;

-- Segments (migration 0006): named constraint sets of one environment, referenced by name from
-- flags' rules (docs/TARGETING.md).
CREATE TABLE IF NOT EXISTS segments (
    id BIGINT NOT NULL AUTO_INCREMENT,
    name VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    environment VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    description VARCHAR(1000) NULL,
    constraints JSON NOT NULL,
    version INTEGER NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    created_by VARCHAR(200) NOT NULL,
    updated_by VARCHAR(200) NOT NULL,
    CONSTRAINT pk_segments PRIMARY KEY (id),
    CONSTRAINT uq_segments_environment_name UNIQUE (environment, name)
) DEFAULT CHARSET = utf8mb4;

-- Audit history of configurations, flags and segments (item_kind 'config' | 'flag' | 'segment';
-- a segment's name is its item_key): one row per create, update and delete with the old and new
-- state. It outlives the item it describes.
CREATE TABLE IF NOT EXISTS config_history (
    id BIGINT NOT NULL AUTO_INCREMENT,
    item_kind VARCHAR(16) NOT NULL,
    item_id BIGINT NOT NULL,
    item_key VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    environment VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NULL,
    service_scope VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    action VARCHAR(16) NOT NULL,
    version INTEGER NOT NULL,
    old_state JSON NULL,
    new_state JSON NULL,
    actor VARCHAR(200) NOT NULL,
    changed_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_config_history PRIMARY KEY (id)
) DEFAULT CHARSET = utf8mb4;

CREATE INDEX ix_config_history_item_kind_item_id_version
    ON config_history (item_kind, item_id, version);
-- Unique (migration 0005): a version names one change of one key, so a create racing a
-- create-and-delete of the same key cannot record version 1 twice.
CREATE UNIQUE INDEX ix_config_history_scope_key_version
    ON config_history (item_kind, environment, service_scope, item_key, version);

-- Transactional outbox (migration 0002): a committed change waiting to be applied to the Redis
-- read model. Written in the change's own transaction, deleted once applied.
CREATE TABLE IF NOT EXISTS change_outbox (
    id BIGINT NOT NULL AUTO_INCREMENT,
    environment VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    event JSON NOT NULL,
    created_at DATETIME(6) NOT NULL,
    shard SMALLINT NOT NULL DEFAULT 0,
    sequence BIGINT NOT NULL DEFAULT 0,
    quarantined_at DATETIME(6) NULL,
    CONSTRAINT pk_change_outbox PRIMARY KEY (id)
) DEFAULT CHARSET = utf8mb4;

CREATE INDEX ix_change_outbox_created_at ON change_outbox (created_at);

-- Committed changes per environment and shard (migration 0005), bumped in each change's
-- transaction; the Redis read model records which it has applied, so a Redis that lost writes
-- is detected. Sharded so that writers of one environment do not commit one at a time.
CREATE TABLE IF NOT EXISTS change_sequences (
    environment VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    shard SMALLINT NOT NULL,
    last_sequence BIGINT NOT NULL,
    CONSTRAINT pk_change_sequences PRIMARY KEY (environment, shard)
) DEFAULT CHARSET = utf8mb4;

-- API tokens (migration 0003): only the SHA-256 of each token is stored.
CREATE TABLE IF NOT EXISTS api_tokens (
    id BIGINT NOT NULL AUTO_INCREMENT,
    name VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    token_hash VARCHAR(64) NOT NULL,
    scopes JSON NOT NULL,
    created_at DATETIME(6) NOT NULL,
    created_by VARCHAR(200) NOT NULL,
    revoked_at DATETIME(6) NULL,
    CONSTRAINT pk_api_tokens PRIMARY KEY (id),
    CONSTRAINT uq_api_tokens_name UNIQUE (name),
    CONSTRAINT uq_api_tokens_token_hash UNIQUE (token_hash)
) DEFAULT CHARSET = utf8mb4;

-- The Alembic revision this schema is (what `alembic stamp` would record): `python -m service
-- migrate` applies later migrations on top of it, and readiness checks it.
CREATE TABLE IF NOT EXISTS alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

INSERT INTO alembic_version (version_num)
    SELECT '0006' FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM alembic_version);
