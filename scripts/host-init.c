/*
 * The init of one of the "hosts" scripts/hosts makes (a pid, network, mount
 * and cgroup namespace each): PID 1 there. It reaps whatever is left to it,
 * at once (a restored tree's processes among them), and on SIGTERM exits,
 * which ends every process of its host.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	printf("host-init: pid %d\n", getpid());
	fflush(stdout);
	for (;;) {
		while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
			;
		if (sigwait(&set, &sig) == 0 && sig != SIGCHLD)
			return 0;
	}
}
