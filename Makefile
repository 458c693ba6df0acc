# lockext: PGXS build.  make && make install; the test suite is test/run.sh.
MODULE_big = lockext
OBJS = src/sql_api.o src/views.o src/guc.o src/registry.o src/registry_many.o src/shared_locks.o src/shared_stats.o src/local_lock.o \
	src/redis_url.o src/owner_value.o src/redis_passfile.o src/redis_nodes.o src/redis_conn.o src/redis_tls.o src/redis_wait.o src/redis_scripts.o src/redis_release.o \
	src/redis_proto.o src/redis_renew.o \
	src/redis_backend.o src/deadlock.o src/keeper_state.o src/keeper.o
EXTENSION = lockext
DATA = sql/lockext--1.0.sql sql/lockext--1.0--1.1.sql sql/lockext--1.1.sql
PGFILEDESC = "lockext - distributed locks for SQL"
SHLIB_LINK = -lhiredis -lssl -lcrypto

# Our own warnings on top of PGXS's.  PostgreSQL's headers are not
# -Wextra-clean (unused parameters in static inline functions), so they
# are searched as system headers, whose warnings compilers leave out.
PG_CFLAGS = -Wall -Wextra -Werror
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server)

# Rebuild what includes a changed header (PGXS tracks headers only when
# PostgreSQL itself was configured with --enable-depend).
override autodepend = yes

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
