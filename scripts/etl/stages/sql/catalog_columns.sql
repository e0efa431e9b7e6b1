-- Columns of tables, partitioned tables, views and materialized views (not partitions); a
-- view's columns are kept only when the view is configured to be loaded.
-- format_type() is called with search_path = pg_catalog, so every user type comes out
-- schema-qualified whatever the caller's search_path.
SELECT n.nspname AS schema,
       c.relname AS "table",
       a.attname AS name,
       a.attnum AS position,
       format_type(a.atttypid, a.atttypmod) AS type,
       t.typtype::text AS typtype,
       t.typcategory::text AS typcategory,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS domain_base,
       CASE WHEN t.typcategory = 'A' AND t.typelem <> 0
            THEN format_type(t.typelem, a.atttypmod) END AS element_type,
       et.typtype::text AS element_typtype,
       NOT a.attnotnull AS nullable,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END AS "default",
       CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END AS identity,
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(ad.adbin, ad.adrelid) END AS generated,
       col_description(c.oid, a.attnum) AS comment
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND NOT c.relispartition
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp%'
ORDER BY 1, 2, a.attnum
