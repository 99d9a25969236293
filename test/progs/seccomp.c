/*
 * seccomp [tamper]: a seccomp filter, installed with no_new_privs before
 * two more threads start, so that every thread has it. The filter makes
 * getppid(2) fail with EPERM (with EACCES after a second filter stacked
 * on top, to show the order of the filters matters). After SIGUSR1 each
 * thread checks the filters still apply to it. "tamper" expects EPERM.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "prog.h"

static volatile int stop, started;
static int results[3];

/* a filter that fails getppid with errno err, and allows everything else */
static void install(int err)
{
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(insns) / sizeof(insns[0]), insns };

	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
		say("FAIL: set-up: seccomp: %s", strerror(errno));
		exit(2);
	}
}

/* errno of getppid in the calling thread (0 if it worked) */
static int probe(void)
{
	return syscall(SYS_getppid) < 0 ? errno : 0;
}

static void *thread_main(void *arg)
{
	int i = (int)(long)arg;

	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	while (!stop)
		usleep(5000);
	results[i] = probe();
	return NULL;
}

int main(int argc, char **argv)
{
	int want = argc > 1 && !strcmp(argv[1], "tamper") ? EPERM : EACCES;
	pthread_t th[2];
	sigset_t usr1;

	prog_trigger_init();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		say("FAIL: set-up: no_new_privs: %s", strerror(errno));
		return 2;
	}
	install(EPERM);
	install(EACCES);	/* the newer filter's result wins for the same action */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	for (long i = 1; i <= 2; i++)
		pthread_create(&th[i - 1], NULL, thread_main, (void *)i);
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < 2)
		usleep(1000);
	say("READY");
	prog_wait_trigger();
	stop = 1;
	results[0] = probe();
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 3; i++)
		CHECK(results[i] == want, "thread %d: getppid gave errno %d (%s), expected %d", i,
		      results[i], strerror(results[i]), want);
	return prog_finish();
}
