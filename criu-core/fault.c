/* Fault points (fault.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"

/* the one piece of process-wide state here: what CRYO_FAULT asked for, read once */
static struct {
	int parsed;
	int list;
	char name[64];
	long nth, seen;
} fault;

static void fault_parse(void)
{
	const char *v = getenv("CRYO_FAULT"), *colon;

	fault.parsed = 1;
	if (!v || !*v)
		return;
	if (!strcmp(v, "list")) {
		fault.list = 1;
		return;
	}
	colon = strchr(v, ':');
	snprintf(fault.name, sizeof(fault.name), "%.*s", (int)(colon ? colon - v : (long)strlen(v)), v);
	fault.nth = colon ? atol(colon + 1) : 1;
	if (fault.nth < 1)
		fault.nth = 1;
}

void fault_point(const char *name)
{
	if (!fault.parsed)
		fault_parse();
	if (fault.list)
		dprintf(STDERR_FILENO, "cryo-fault: %s\n", name);
	if (fault.name[0] && !strcmp(fault.name, name) && ++fault.seen == fault.nth)
		kill(getpid(), SIGKILL);
}

void fault_off(void)
{
	fault.parsed = 1;
	fault.list = 0;
	fault.name[0] = 0;
}
