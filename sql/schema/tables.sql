-- The Sacred Six, column-compatible with HERA production.
-- Run only when hera-migrate owns the schema (it created these tables itself);
-- against an existing HERA database nothing in this file runs (attach mode).
-- Every statement is idempotent.

CREATE TABLE IF NOT EXISTS core_organizations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_name text NOT NULL,
    organization_code text NOT NULL UNIQUE,
    organization_type text,
    settings          jsonb DEFAULT '{}'::jsonb,
    status            text DEFAULT 'active',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    created_by        uuid NOT NULL,
    updated_by        uuid NOT NULL
);

CREATE TABLE IF NOT EXISTS core_entities (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES core_organizations (id),
    entity_type     text NOT NULL,
    entity_name     text NOT NULL,
    entity_code     text,
    smart_code      varchar(100),
    metadata        jsonb DEFAULT '{}'::jsonb,
    status          text DEFAULT 'active',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    created_by      uuid NOT NULL,
    updated_by      uuid NOT NULL,
    version         integer NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS core_dynamic_data (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id     uuid NOT NULL REFERENCES core_organizations (id),
    entity_id           uuid NOT NULL REFERENCES core_entities (id) ON DELETE CASCADE,
    field_name          text NOT NULL,
    field_type          text,
    field_value_text    text,
    field_value_number  numeric(20, 8),
    field_value_boolean boolean,
    field_value_date    timestamptz,
    field_value_json    jsonb,
    smart_code          varchar(100),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    created_by          uuid NOT NULL,
    updated_by          uuid NOT NULL,
    UNIQUE (organization_id, entity_id, field_name)
);

CREATE TABLE IF NOT EXISTS core_relationships (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL REFERENCES core_organizations (id),
    from_entity_id    uuid NOT NULL REFERENCES core_entities (id),
    to_entity_id      uuid NOT NULL REFERENCES core_entities (id),
    relationship_type text NOT NULL,
    relationship_data jsonb DEFAULT '{}'::jsonb,
    smart_code        varchar(100),
    is_active         boolean NOT NULL DEFAULT true,
    effective_date    timestamptz DEFAULT now(),
    expiration_date   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    created_by        uuid NOT NULL,
    updated_by        uuid NOT NULL,
    CONSTRAINT core_relationships_distinct_ends CHECK (from_entity_id <> to_entity_id)
);

CREATE TABLE IF NOT EXISTS universal_transactions (
    id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id           uuid NOT NULL REFERENCES core_organizations (id),
    transaction_type          text NOT NULL,
    transaction_code          text UNIQUE,
    transaction_date          timestamptz NOT NULL DEFAULT now(),
    source_entity_id          uuid REFERENCES core_entities (id),
    target_entity_id          uuid REFERENCES core_entities (id),
    total_amount              numeric(19, 4) NOT NULL DEFAULT 0,
    transaction_status        text DEFAULT 'pending',
    smart_code                varchar(100) NOT NULL,
    business_context          jsonb DEFAULT '{}'::jsonb,
    metadata                  jsonb DEFAULT '{}'::jsonb,
    fiscal_period_entity_id   uuid REFERENCES core_entities (id),
    fiscal_year               integer,
    fiscal_period             integer,
    posting_period_code       text,
    transaction_currency_code char(3),
    -- HERA production's columns beyond hera-migrate's contract: copies carry
    -- them as they are (see sql/functions/execute_batch.sql).
    base_currency_code        char(3),
    exchange_rate             numeric(20, 10),
    exchange_rate_date        date,
    exchange_rate_type        text,
    reference_number          text,
    external_reference        text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    created_by                uuid NOT NULL,
    updated_by                uuid NOT NULL,
    version                   integer NOT NULL DEFAULT 1,
    CONSTRAINT universal_transactions_type_upper CHECK (transaction_type = upper(transaction_type)),
    CONSTRAINT universal_transactions_smart_code_valid CHECK (hera_smart_code_is_valid(smart_code))
);

CREATE TABLE IF NOT EXISTS universal_transaction_lines (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES core_organizations (id),
    transaction_id  uuid NOT NULL REFERENCES universal_transactions (id) ON DELETE CASCADE,
    line_number     integer NOT NULL,
    entity_id       uuid REFERENCES core_entities (id),
    line_type       text NOT NULL,
    description     text,
    quantity        numeric(20, 8),
    unit_amount     numeric(20, 8),
    line_amount     numeric(20, 8),
    discount_amount numeric(20, 8),
    tax_amount      numeric(20, 8),
    smart_code      varchar(100) NOT NULL,
    line_data       jsonb DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    created_by      uuid NOT NULL,
    updated_by      uuid NOT NULL,
    version         integer NOT NULL DEFAULT 1,
    CONSTRAINT universal_transaction_lines_number_unique UNIQUE (transaction_id, line_number),
    CONSTRAINT universal_transaction_lines_smart_code_valid CHECK (hera_smart_code_is_valid(smart_code))
);
