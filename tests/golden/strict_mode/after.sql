CREATE TABLE campaigns (id integer PRIMARY KEY, name text, performance_score numeric(5,2));
CREATE INDEX campaigns_name_idx ON campaigns (name);
