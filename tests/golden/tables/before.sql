CREATE TABLE platforms (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE legacy_reports (id integer PRIMARY KEY, body text, generated_at date);
CREATE VIEW platform_names AS SELECT name FROM platforms;
