# Makefile for pg_raft, built with PGXS.
#
#   make && sudo make install      build and install the extension
#   bash test/run_all.sh           run every test (see README.md)
#
# The consensus core (src/raft/*.c) and the change format (src/changes/*.c)
# compile into the same shared library as the PostgreSQL integration
# (src/*.c); test/sim/ builds them separately, under the sanitizers, for the
# simulator, the unit tests and the fuzzers.

PG_CONFIG ?= pg_config

EXTENSION = pg_raft
# One source of truth for the version: the control file.  raft.version()
# returns it, and the install script is named after it.
PG_RAFT_VERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" pg_raft.control)
DATA = pg_raft--$(PG_RAFT_VERSION).sql

MODULE_big = pg_raft
OBJS = \
	$(patsubst %.c,%.o,$(wildcard src/*.c)) \
	$(patsubst %.c,%.o,$(wildcard src/raft/*.c)) \
	$(patsubst %.c,%.o,$(wildcard src/changes/*.c))

# The workers and join_cluster() speak libpq to the other members; the
# health API (src/http.c) serves HTTP with GNU libmicrohttpd.
PG_CPPFLAGS = -DPG_RAFT_VERSION='"$(PG_RAFT_VERSION)"' -I$(libpq_srcdir) -Isrc
SHLIB_LINK_INTERNAL = $(libpq)
SHLIB_LINK = -lmicrohttpd
# PostgreSQL's own flags already give -Wall and more.  Of -Wextra, only
# -Wunused-parameter trips on the server headers (static inline functions).
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

# pg_regress: the tests in sql/, against a temporary instance that preloads
# the library (installcheck does not start one by itself).
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/regress.conf

# TAP: every test/t/*.pl, each starting its own instances.
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

EXTRA_CLEAN = tmp_check_regress

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: a changed struct must rebuild every
# object that uses it, or processes disagree about shared memory's layout.
$(OBJS): $(wildcard src/*.h src/raft/*.h src/changes/*.h)

# `make installcheck` runs both suites; these run one each (test/run_all.sh
# counts them separately).
.PHONY: installcheck-regress installcheck-tap
installcheck-regress: submake $(REGRESS_PREP)
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

installcheck-tap:
	$(prove_installcheck)
