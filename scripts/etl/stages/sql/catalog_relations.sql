-- Tables, partitioned tables, views and materialized views in user schemas.
-- Partitions are not returned here: they are folded into their root (catalog_partitions.sql).
-- Objects that belong to an extension are left out: the extension owns them, not the schema.
SELECT n.nspname AS schema,
       c.relname AS name,
       c.relkind::text AS relkind,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
