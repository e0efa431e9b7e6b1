-- 'paused' removed, 'archived' added (used by two columns); a value added to an unused enum;
-- money_amount gains a check (narrowing); short_code widens; spend moves onto a domain.
CREATE TYPE campaign_status AS ENUM ('draft', 'active', 'completed', 'archived');
CREATE TYPE unused_mood AS ENUM ('calm', 'busy');
CREATE DOMAIN money_amount AS numeric(14,2) CHECK (VALUE >= 0) CHECK (VALUE < 1000000000);
CREATE DOMAIN short_code AS character varying(20);
CREATE TABLE campaigns (
    id integer PRIMARY KEY,
    status campaign_status NOT NULL DEFAULT 'draft',
    history campaign_status[],
    budget money_amount,
    code short_code,
    spend money_amount
);
