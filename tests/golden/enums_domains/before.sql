CREATE TYPE campaign_status AS ENUM ('draft', 'active', 'paused', 'completed');
CREATE TYPE unused_mood AS ENUM ('calm');
CREATE DOMAIN money_amount AS numeric(14,2) CHECK (VALUE >= 0);
CREATE DOMAIN short_code AS character varying(10);
CREATE TABLE campaigns (
    id integer PRIMARY KEY,
    status campaign_status NOT NULL DEFAULT 'draft',
    history campaign_status[],
    budget money_amount,
    code short_code,
    spend numeric(14,2)
);
