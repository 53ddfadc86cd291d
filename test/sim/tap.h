/*-------------------------------------------------------------------------
 *
 * tap.h
 *	  TAP output for the core's test programs (test_core, test_wire,
 *	  test_changes): "ok N - ..." / "not ok N - ..." lines, "# ..."
 *	  diagnostics, counted by test/run_all.sh.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_TAP_H
#define PG_RAFT_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static int	n_tests;
static int	n_failed;

/* Prints one test line; returns cond so that callers can stop early. */
static bool
vcheck(bool cond, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0), unused));

static bool
vcheck(bool cond, const char *fmt, va_list ap)
{
	n_tests++;
	if (!cond)
		n_failed++;
	printf("%s %d - ", cond ? "ok" : "not ok", n_tests);
	vprintf(fmt, ap);
	printf("\n");
	return cond;
}

static bool
check(bool cond, const char *fmt,...)
	__attribute__((format(printf, 2, 3), unused));

static bool
check(bool cond, const char *fmt,...)
{
	va_list		ap;
	bool		result;

	va_start(ap, fmt);
	result = vcheck(cond, fmt, ap);
	va_end(ap);
	return result;
}

/* A diagnostic line; TAP harnesses show it and ignore it. */
static void
diag(const char *fmt,...)
	__attribute__((format(printf, 1, 2), unused));

static void
diag(const char *fmt,...)
{
	va_list		ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

#endif							/* PG_RAFT_TAP_H */
