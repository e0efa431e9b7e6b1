CREATE TABLE platforms (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE users (id uuid PRIMARY KEY, email text NOT NULL UNIQUE, active boolean DEFAULT true);
CREATE MATERIALIZED VIEW platform_counts AS SELECT count(*) AS n FROM platforms;
