/*
 * Fault points: where the tests kill cryo, to show that whatever moment it
 * dies at, its guardian leaves the workload as it was (test_guardian.py).
 *
 *   CRYO_FAULT=NAME[:N]   SIGKILL cryo the Nth time (default: the first)
 *                         it reaches the point NAME
 *   CRYO_FAULT=list       name each point on stderr as it is reached
 *
 * Without CRYO_FAULT a point costs one test of a flag.
 */
#ifndef CRYO_FAULT_H
#define CRYO_FAULT_H

void fault_point(const char *name);
/* no more faults in this process (the guardian) */
void fault_off(void);

#endif
