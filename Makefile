# lockext: PGXS build.
#   make && make install                  (PG_CONFIG=... for another server)
#   make installcheck                     pg_regress, isolation and TAP against
#                                         the running server (PGHOST, PGPORT,
#                                         PGUSER: a superuser)
#   make installcheck TAP_TESTS=          without the TAP suite
#   make prove_installcheck               the TAP suite alone
#   make torture SECONDS=600              the torture test (test/torture/) alone
#   make dist                             lockext-<version>.zip for PGXN, from git HEAD
# The test command, bash test/run.sh, does all of it on a fresh Debian 12.
MODULE_big = lockext
OBJS = src/sql_api.o src/views.o src/guc.o src/registry.o src/registry_many.o src/release.o src/shared_area.o src/shared_locks.o src/shared_waits.o src/shared_stats.o src/local_lock.o \
	src/redis_url.o src/owner_value.o src/redis_passfile.o src/redis_nodes.o src/redis_conn.o src/redis_checks.o src/redis_tls.o src/redis_wait.o src/redis_sweep.o src/redis_scripts.o src/redis_release.o \
	src/redis_owner.o src/redis_proto.o src/redis_acquire.o src/redis_renew.o \
	src/redis_backend.o src/redis_backend_release.o src/deadlock.o src/keeper_state.o src/keeper_rows.o src/keeper_items.o src/keeper.o src/liveness.o src/lease_board.o \
	src/wait_events.o
EXTENSION = lockext
DATA = sql/lockext--1.0.sql sql/lockext--1.0--1.1.sql sql/lockext--1.1.sql
PGFILEDESC = "lockext - distributed locks for SQL"
SHLIB_LINK = -lhiredis -lssl -lcrypto

# sql/*.sql besides the extension scripts are pg_regress tests (expected/);
# test/specs/*.spec are isolation specs, whose expected output is in
# expected/ too: pg_isolation_regress looks for specs/ and expected/ in its
# output directory first, then in its input directory.
REGRESS = $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql)))
ISOLATION = $(patsubst test/specs/%.spec,%,$(wildcard test/specs/*.spec))
ISOLATION_OPTS = --outputdir=test
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl
EXTRA_CLEAN = test/results test/regression.diffs test/regression.out

# Our own warnings on top of PGXS's (no -Werror: a newer compiler or header
# must not break the build; the test command builds with COPT=-Werror).
# PostgreSQL's headers are not -Wextra-clean (unused parameters in static
# inline functions), so they are searched as system headers, whose
# warnings compilers leave out.
PG_CFLAGS = -Wall -Wextra
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server)

# Rebuild what includes a changed header (PGXS tracks headers only when
# PostgreSQL itself was configured with --enable-depend).
override autodepend = yes

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The TAP tests' helper modules (Makefile.global resets PROVE_FLAGS, and
# "make prove_installcheck PROVE_FLAGS=-v" must keep them).
override PROVE_FLAGS += -I test/t

# PGXS defines how, not the target.
.PHONY: prove_installcheck
prove_installcheck:
	$(prove_installcheck)

# The torture test against the installed extension, like the TAP suite:
# SECONDS of random operations and faults (default 60), then its checks.
.PHONY: torture
torture: PROVE_TESTS = test/torture/torture.pl
torture: export LOCKEXT_TORTURE_SECONDS = $(SECONDS)
torture:
	$(prove_installcheck)

# The PGXN release archive: what git HEAD holds (committed files only),
# named and prefixed with META.json's version.
DISTVERSION = $(shell perl -MJSON::PP -e 'local $$/; print decode_json(<>)->{version}' META.json)
DISTDIR = .
.PHONY: dist
dist:
	git archive --format=zip --prefix=$(EXTENSION)-$(DISTVERSION)/ \
		--output=$(DISTDIR)/$(EXTENSION)-$(DISTVERSION).zip HEAD

.PHONY: test demo bench fuzz
test:
	bash test/run.sh
fuzz:
	bash test/fuzz.sh 600
demo:
	bash test/demo.sh
bench:
	bash test/bench/run.sh
