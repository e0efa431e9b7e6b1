CREATE SCHEMA "Sales Ops";
CREATE TABLE "Sales Ops"."Kunden" (
    "Kunden-Nr" integer PRIMARY KEY,
    "straße" character varying(80),
    "Größe" smallint,
    "order" text
);
CREATE TABLE "Sales Ops".orders (
    id integer PRIMARY KEY,
    "Kunden-Nr" integer REFERENCES "Sales Ops"."Kunden"("Kunden-Nr")
);
CREATE TABLE public."Über" (id integer PRIMARY KEY);
