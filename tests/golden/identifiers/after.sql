CREATE SCHEMA "Sales Ops";
CREATE TABLE "Sales Ops"."Kunden" (
    "Kunden-Nr" integer PRIMARY KEY,
    "straße" character varying(120),
    "Größe" smallint CHECK ("Größe" > 0),
    "order" text,
    "Bemerkung äöü" text
);
CREATE TABLE "Sales Ops".orders (
    id integer PRIMARY KEY,
    "Kunden-Nr" integer REFERENCES "Sales Ops"."Kunden"("Kunden-Nr")
);
CREATE INDEX "orders by Kunde" ON "Sales Ops".orders ("Kunden-Nr");
CREATE TABLE public."Über" (id integer PRIMARY KEY, "naïve" boolean);
