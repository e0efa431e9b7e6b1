-- campaigns: unique + check on existing data (breaking), index added (safe), partial index.
-- flights: composite key grows a column (key change), check dropped (relaxed).
-- placements: FK on delete changes (modification), composite FK added (new relationship),
--   unique dropped, index dropped, unique on a new column (non-breaking).
-- metrics: gains a primary key.
CREATE TABLE campaigns (
    id integer PRIMARY KEY, code text UNIQUE, budget numeric(14,2) CHECK (budget >= 0), status text
);
CREATE INDEX campaigns_status_idx ON campaigns (status);
CREATE INDEX campaigns_active_idx ON campaigns (id) WHERE status = 'active';
CREATE TABLE flights (
    campaign_id integer NOT NULL REFERENCES campaigns(id),
    flight_no integer NOT NULL,
    starts date,
    ends date,
    region text NOT NULL,
    PRIMARY KEY (campaign_id, flight_no, region)
);
CREATE TABLE placements (
    id integer PRIMARY KEY,
    campaign_id integer REFERENCES campaigns(id) ON DELETE SET NULL,
    flight_campaign integer,
    flight_no integer,
    label text,
    slug text UNIQUE
);
ALTER TABLE flights ADD CONSTRAINT flights_uniq UNIQUE (campaign_id, flight_no);
ALTER TABLE placements ADD CONSTRAINT placements_flight_fkey
    FOREIGN KEY (flight_campaign, flight_no) REFERENCES flights (campaign_id, flight_no);
CREATE TABLE metrics (day date NOT NULL, placement_id integer NOT NULL, clicks integer,
                      PRIMARY KEY (day, placement_id));
