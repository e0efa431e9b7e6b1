CREATE TABLE campaigns (id integer PRIMARY KEY, code text, budget numeric(14,2), status text);
CREATE TABLE flights (
    campaign_id integer NOT NULL REFERENCES campaigns(id),
    flight_no integer NOT NULL,
    starts date,
    ends date,
    region text,
    PRIMARY KEY (campaign_id, flight_no),
    CONSTRAINT flights_dates CHECK (ends >= starts)
);
CREATE TABLE placements (
    id integer PRIMARY KEY,
    campaign_id integer REFERENCES campaigns(id) ON DELETE CASCADE,
    flight_campaign integer,
    flight_no integer,
    label text UNIQUE
);
CREATE INDEX placements_label_lower ON placements (lower(label));
CREATE TABLE metrics (day date NOT NULL, placement_id integer NOT NULL, clicks integer);
