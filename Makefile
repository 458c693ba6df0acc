# lockext: PGXS build.  make && make install; the test suite is test/run.sh.
MODULE_big = lockext
OBJS = src/sql_api.o src/guc.o src/registry.o src/local_lock.o \
	src/redis_url.o src/owner_value.o src/redis_conn.o src/redis_proto.o \
	src/redis_backend.o
EXTENSION = lockext
DATA = sql/lockext--1.0.sql
PGFILEDESC = "lockext - distributed locks for SQL"
SHLIB_LINK = -lhiredis

# Our own warnings on top of PGXS's; PostgreSQL's headers are not
# -Wextra-clean for unused parameters (nor is their callback style).
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: test demo bench fuzz
test:
	bash test/run.sh
fuzz:
	bash test/fuzz.sh 600
demo:
	bash test/demo.sh
bench:
	bash test/bench/run.sh
