-- The tables whose rows `etl sample` counts and checksums: ordinary and partitioned parents
-- (a parent's rows include its partitions'), outside the system schemas.
SELECT n.nspname, c.relname
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
 ORDER BY 1, 2
