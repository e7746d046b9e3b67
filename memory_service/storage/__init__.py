"""Storage layer: tables, engines and the SQL the services run. Portable across SQLite and
PostgreSQL: short explicit write transactions, row locks that SQLite compiles away (its writers are
already serialised by BEGIN IMMEDIATE)."""
