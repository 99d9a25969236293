/*
 * The sample container's IPC service: it makes a SysV shared memory
 * segment (attached, with a pattern and a counter it keeps bumping), a
 * message queue with messages in it, a semaphore set with values and a
 * POSIX message queue with a message, and holds a pseudo-terminal of the
 * container's devpts (window 33x77), then runs forever.
 *
 *   ct-ipc          run the service
 *   ct-ipc show     print every object's state (contents included), one line each
 *   ct-ipc counter  print the counter word the service keeps bumping in the segment
 *
 * Built static: it runs inside the busybox root file system.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#define SHM_KEY 0x43727931
#define MSG_KEY 0x43727932
#define SEM_KEY 0x43727933
#define SHM_SIZE (256 * 1024)
#define MQ_NAME "/cryo-mq"

struct msg {
	long type;
	char text[64];
};

static uint32_t sum(const unsigned char *p, size_t n)
{
	uint32_t s = 2166136261u;

	for (size_t i = 0; i < n; i++)
		s = (s ^ p[i]) * 16777619u;
	return s;
}

static int show(void)
{
	int shm = shmget(SHM_KEY, 0, 0), msq = msgget(MSG_KEY, 0), sem = semget(SEM_KEY, 0, 0);
	struct shmid_ds sd;
	struct msqid_ds md;
	struct semid_ds sm;
	unsigned short vals[4];
	struct mq_attr ma;
	mqd_t mq;

	if (shm < 0 || shmctl(shm, IPC_STAT, &sd) < 0) {
		perror("shm");
		return 1;
	}
	/* attach read-only: the contents, without the live counter word */
	unsigned char *p = shmat(shm, NULL, SHM_RDONLY);
	if (p == (void *)-1) {
		perror("shmat");
		return 1;
	}
	printf("shm id %d key %#x size %zu mode %o pattern %08x\n", shm, SHM_KEY, (size_t)sd.shm_segsz,
	       sd.shm_perm.mode & 0777, sum(p + 64, SHM_SIZE - 64));
	shmdt(p);
	if (msq < 0 || msgctl(msq, IPC_STAT, &md) < 0) {
		perror("msg");
		return 1;
	}
	printf("msg id %d key %#x messages %lu bytes %lu mode %o\n", msq, MSG_KEY, (unsigned long)md.msg_qnum,
	       (unsigned long)md.__msg_cbytes, md.msg_perm.mode & 0777);
	if (sem < 0 || semctl(sem, 0, IPC_STAT, &sm) < 0 || semctl(sem, 0, GETALL, vals) < 0) {
		perror("sem");
		return 1;
	}
	printf("sem id %d key %#x nsems %lu values %u %u %u %u\n", sem, SEM_KEY, (unsigned long)sm.sem_nsems,
	       vals[0], vals[1], vals[2], vals[3]);
	mq = mq_open(MQ_NAME, O_RDONLY);
	if (mq < 0 || mq_getattr(mq, &ma) < 0) {
		perror("mq");
		return 1;
	}
	printf("mqueue %s messages %ld maxmsg %ld msgsize %ld\n", MQ_NAME, ma.mq_curmsgs, ma.mq_maxmsg, ma.mq_msgsize);
	/* the service's pty, as a new open of its slave sees it */
	int pt = open("/dev/pts/0", O_RDWR | O_NOCTTY);
	struct winsize ws;

	if (pt < 0 || ioctl(pt, TIOCGWINSZ, &ws) < 0) {
		perror("pty /dev/pts/0");
		return 1;
	}
	printf("pty /dev/pts/0 rows %u cols %u\n", ws.ws_row, ws.ws_col);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned short vals[4] = { 3, 0, 7, 42 };
	struct mq_attr ma = { .mq_maxmsg = 8, .mq_msgsize = 64 };
	int shm, msq, sem;
	mqd_t mq;
	volatile uint32_t *counter;
	unsigned char *p;

	if (argc > 1 && !strcmp(argv[1], "show"))
		return show();
	if (argc > 1 && !strcmp(argv[1], "counter")) {
		int id = shmget(SHM_KEY, 0, 0);
		uint32_t *c = id < 0 ? (void *)-1 : shmat(id, NULL, SHM_RDONLY);

		if (c == (void *)-1) {
			perror("ct-ipc counter");
			return 1;
		}
		printf("%u\n", *c);
		return 0;
	}
	shm = shmget(SHM_KEY, SHM_SIZE, IPC_CREAT | 0640);
	msq = msgget(MSG_KEY, IPC_CREAT | 0600);
	sem = semget(SEM_KEY, 4, IPC_CREAT | 0660);
	mq = mq_open(MQ_NAME, O_CREAT | O_RDWR, 0644, &ma);
	if (shm < 0 || msq < 0 || sem < 0 || mq < 0) {
		perror("ct-ipc: cannot create its objects");
		return 1;
	}
	p = shmat(shm, NULL, 0);
	if (p == (void *)-1) {
		perror("ct-ipc: shmat");
		return 1;
	}
	for (size_t i = 64; i < SHM_SIZE; i++)
		p[i] = (unsigned char)(i * 7 + i / 4096);
	for (int i = 0; i < 3; i++) {
		struct msg m = { .type = i + 1 };

		snprintf(m.text, sizeof(m.text), "message %d from the container", i);
		msgsnd(msq, &m, strlen(m.text) + 1, 0);
	}
	semctl(sem, 0, SETALL, vals);
	mq_send(mq, "posix message", 14, 5);
	{
		struct winsize ws = { .ws_row = 33, .ws_col = 77 };
		int master = posix_openpt(O_RDWR | O_NOCTTY), slave = -1;

		if (master >= 0 && !grantpt(master) && !unlockpt(master))
			slave = open(ptsname(master), O_RDWR | O_NOCTTY);
		if (slave < 0 || ioctl(master, TIOCSWINSZ, &ws)) {
			perror("ct-ipc: pty");
			return 1;
		}
	}
	counter = (volatile uint32_t *)p;
	for (;;) {
		(*counter)++;
		usleep(100000);
	}
}
