/*
 * The IPC namespace: SysV shared memory (with its contents), message
 * queues (with their messages, read with MSG_COPY, which leaves them
 * queued), semaphore sets (with their values), and POSIX message queues
 * (read by receiving every message and sending it back in the same order,
 * while the tree is stopped).
 *
 * Dump: cryo enters the tree's IPC namespace; for the POSIX queues, whose
 * names only a mount of their file system lists, it also mounts one in a
 * mount namespace of its own for a moment. Restore: the root, in its new
 * IPC namespace, makes every object again with the same id
 * (kernel.*_next_id) before any task opens or attaches one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "ns.h"
#include "restore.h"
#include "util.h"
#include "validate.h"

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

#define MQUEUE_MAGIC	0x19800202
#define SHM_CHUNK	(1 << 20)
#define MSG_MAX_LEN	(64 << 10)

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static IpcPermEntry *perm_entry(struct dump_ctx *ctx, const struct ipc_perm *p, int id)
{
	IpcPermEntry *e = arena_new(&ctx->arena, IpcPermEntry);

	if (!e)
		return NULL;
	ipc_perm_entry__init(e);
	e->key = p->__key;
	e->id = id;
	e->uid = ns_uid(ctx, p->uid);
	e->gid = ns_gid(ctx, p->gid);
	e->cuid = ns_uid(ctx, p->cuid);
	e->cgid = ns_gid(ctx, p->cgid);
	e->mode = p->mode & 0777;
	return e;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---------------------------------------------------------------- dump */

static int dump_shm(struct dump_ctx *ctx, struct img *img)
{
	struct shm_info info;
	int max = shmctl(0, SHM_INFO, (struct shmid_ds *)&info), ret = 0;

	for (int idx = 0; idx <= max && !ret; idx++) {
		struct shmid_ds ds;
		int id = shmctl(idx, SHM_STAT, &ds);
		IpcEntry e = IPC_ENTRY__INIT;
		SysvShmEntry s = SYSV_SHM_ENTRY__INIT;
		uint8_t *p;

		if (id < 0)
			continue;
		s.perm = perm_entry(ctx, &ds.shm_perm, id);
		if (!s.perm)
			return -ENOMEM;
		s.size = ds.shm_segsz;
		e.shm = &s;
		if ((ret = img_write(img, &e.base)))
			return ret;
		p = shmat(id, NULL, SHM_RDONLY);
		if (p == (void *)-1)
			return pr_perror("SysV shared memory %d (key %#x): cannot attach it to read it", id,
					 ds.shm_perm.__key);
		for (uint64_t off = 0; off < s.size && !ret; off += SHM_CHUNK) {
			size_t n = MIN(SHM_CHUNK, s.size - off);
			IpcEntry ce = IPC_ENTRY__INIT;
			SysvShmChunk c = SYSV_SHM_CHUNK__INIT;

			if (all_zero(p + off, n))
				continue;
			c.id = id;
			c.offset = off;
			c.data.data = p + off;
			c.data.len = n;
			ce.shm_data = &c;
			ret = img_write(img, &ce.base);
		}
		shmdt(p);
		pr_debug("SysV shm %d: key %#x, %lu bytes", id, s.perm->key, s.size);
	}
	return ret;
}

static int dump_msg(struct dump_ctx *ctx, struct img *img)
{
	struct msginfo info;
	int max = msgctl(0, MSG_INFO, (struct msqid_ds *)&info), ret = 0;
	_cleanup_free_ struct { long type; char text[MSG_MAX_LEN]; } *buf = malloc(sizeof(*buf));

	if (!buf)
		return -ENOMEM;
	for (int idx = 0; idx <= max && !ret; idx++) {
		struct msqid_ds ds;
		int id = msgctl(idx, MSG_STAT, &ds);
		IpcEntry e = IPC_ENTRY__INIT;
		SysvMsgEntry m = SYSV_MSG_ENTRY__INIT;

		if (id < 0)
			continue;
		m.perm = perm_entry(ctx, &ds.msg_perm, id);
		m.msgs = arena_array(&ctx->arena, SysvMsg *, ds.msg_qnum + 1);
		if (!m.perm || !m.msgs)
			return -ENOMEM;
		m.qbytes = ds.msg_qbytes;
		for (size_t i = 0; i < ds.msg_qnum; i++) {
			ssize_t n = msgrcv(id, buf, MSG_MAX_LEN, i, IPC_NOWAIT | MSG_COPY | MSG_NOERROR);
			SysvMsg *sm = arena_new(&ctx->arena, SysvMsg);

			if (n < 0)
				return pr_perror("SysV message queue %d: cannot copy message %zu", id, i);
			if (!sm)
				return -ENOMEM;
			sysv_msg__init(sm);
			if (!(sm->data.data = arena_alloc(&ctx->arena, n + 1)))
				return -ENOMEM;
			sm->type = buf->type;
			memcpy(sm->data.data, buf->text, n);
			sm->data.len = n;
			m.msgs[m.n_msgs++] = sm;
		}
		e.msg = &m;
		ret = img_write(img, &e.base);
		pr_debug("SysV msg %d: key %#x, %zu messages", id, m.perm->key, m.n_msgs);
	}
	return ret;
}

static int dump_sem(struct dump_ctx *ctx, struct img *img)
{
	struct seminfo info;
	int max = semctl(0, 0, SEM_INFO, (union semun){ .buf = (struct semid_ds *)&info }), ret = 0;

	for (int idx = 0; idx <= max && !ret; idx++) {
		struct semid_ds ds;
		int id = semctl(idx, 0, SEM_STAT, (union semun){ .buf = &ds });
		IpcEntry e = IPC_ENTRY__INIT;
		SysvSemEntry s = SYSV_SEM_ENTRY__INIT;
		_cleanup_free_ unsigned short *vals = NULL;

		if (id < 0)
			continue;
		vals = calloc(ds.sem_nsems + 1, sizeof(*vals));
		s.perm = perm_entry(ctx, &ds.sem_perm, id);
		s.values = arena_array(&ctx->arena, uint32_t, ds.sem_nsems + 1);
		if (!vals || !s.perm || !s.values)
			return -ENOMEM;
		if (semctl(id, 0, GETALL, (union semun){ .array = vals }))
			return pr_perror("SysV semaphore set %d: cannot read its values", id);
		for (size_t i = 0; i < ds.sem_nsems; i++)
			s.values[i] = vals[i];
		s.n_values = ds.sem_nsems;
		e.sem = &s;
		ret = img_write(img, &e.base);
	}
	return ret;
}

/* take every message out of the queue and put it back as it was; record them */
static int dump_one_mq(struct dump_ctx *ctx, struct img *img, const char *dir, const char *name)
{
	char path[PATH_MAX_LEN], qname[NAME_MAX + 2];
	struct mq_attr at;
	struct stat st;
	IpcEntry e = IPC_ENTRY__INIT;
	MqueueEntry m = MQUEUE_ENTRY__INIT;
	_cleanup_free_ char *buf = NULL;
	mqd_t q;
	int ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(qname, sizeof(qname), "/%s", name);
	if (stat(path, &st))
		return pr_perror("POSIX message queue %s: stat", qname);
	q = mq_open(qname, O_RDWR | O_NONBLOCK);
	if (q < 0 || mq_getattr(q, &at)) {
		ret = pr_perror("POSIX message queue %s: cannot open it", qname);
		if (q >= 0)
			mq_close(q);
		return ret;
	}
	buf = malloc(at.mq_msgsize + 1);
	m.msgs = arena_array(&ctx->arena, MqMsg *, at.mq_curmsgs + 1);
	if (!buf || !m.msgs) {
		mq_close(q);
		return -ENOMEM;
	}
	m.name = arena_strdup(&ctx->arena, name);
	m.mode = st.st_mode & 07777;
	m.uid = ns_uid(ctx, st.st_uid);
	m.gid = ns_gid(ctx, st.st_gid);
	m.maxmsg = at.mq_maxmsg;
	m.msgsize = at.mq_msgsize;
	for (long i = 0; i < at.mq_curmsgs && !ret; i++) {
		unsigned prio;
		ssize_t n = mq_receive(q, buf, at.mq_msgsize, &prio);
		MqMsg *mm = arena_new(&ctx->arena, MqMsg);

		if (n < 0) {
			ret = pr_perror("POSIX message queue %s: cannot read message %ld", qname, i);
			break;
		}
		if (!mm) {
			ret = -ENOMEM;
			break;
		}
		mq_msg__init(mm);
		if (!(mm->data.data = arena_alloc(&ctx->arena, n + 1))) {
			ret = -ENOMEM;
			break;
		}
		mm->prio = prio;
		memcpy(mm->data.data, buf, n);
		mm->data.len = n;
		m.msgs[m.n_msgs++] = mm;
	}
	/* back in, highest priority first as they came: the queue is as it was */
	for (size_t i = 0; i < m.n_msgs; i++)
		if (mq_send(q, (char *)m.msgs[i]->data.data, m.msgs[i]->data.len, m.msgs[i]->prio))
			ret = ret ?: pr_perror("POSIX message queue %s: cannot put message %zu back", qname, i);
	mq_close(q);
	if (ret)
		return ret;
	e.mq = &m;
	return img_write(img, &e.base);
}

/* in a mount namespace of cryo's own for a moment: mqueue mounted on /tmp there */
static int dump_mqueues(struct dump_ctx *ctx, struct img *img)
{
	_cleanup_close_ int saved_mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int cwd = open(".", O_PATH | O_CLOEXEC);
	DIR *d = NULL;
	struct dirent *de;
	int ret = 0;

	if (saved_mnt < 0 || cwd < 0)
		return pr_perror("cannot keep cryo's mount namespace");
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("mqueue", "/tmp", "mqueue", 0, NULL))
		ret = pr_perror("cannot mount the container's mqueue file system to list its queues");
	else if (!(d = opendir("/tmp")))
		ret = pr_perror("cannot list the container's POSIX message queues");
	while (d && !ret && (de = readdir(d)))
		if (de->d_name[0] != '.')
			ret = dump_one_mq(ctx, img, "/tmp", de->d_name);
	if (d)
		closedir(d);
	if (setns(saved_mnt, CLONE_NEWNS) || fchdir(cwd))
		ret = ret ?: pr_perror("cannot go back to cryo's mount namespace");
	return ret;
}

int ipc_dump(struct dump_ctx *ctx)
{
	struct img *img;
	int saved = -1, ret;

	if (!(ctx->ns_flags & CLONE_NEWIPC))
		return 0;
	if ((ret = ns_enter(ctx->tasks[0]->pid, "ipc", &saved)))
		return ret;
	img = img_create(ctx->dirfd, IMG_IPC, 0);
	ret = img ? dump_shm(ctx, img) ?: dump_msg(ctx, img) ?: dump_sem(ctx, img) ?: dump_mqueues(ctx, img) : -EIO;
	if (img)
		ret = img_close(img) ?: ret;
	return ns_leave("ipc", &saved) ?: ret;
}

/* ------------------------------------------------------------- restore */

/* the next object of its kind gets this id */
static int set_next_id(const char *kind, int id)
{
	char path[64], buf[16];
	int fd, n = snprintf(buf, sizeof(buf), "%d", id), ret = 0;

	snprintf(path, sizeof(path), "/proc/sys/kernel/%s_next_id", kind);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write_all(fd, buf, n))
		ret = pr_perror("cannot write %d to %s", id, path);
	if (fd >= 0)
		close(fd);
	return ret;
}

static int check_id(int got, const IpcPermEntry *p, const char *what)
{
	if (got < 0)
		return pr_perror("cannot make %s %u (key %#x)", what, p->id, p->key);
	if ((uint32_t)got != p->id) {
		pr_err("%s %u (key %#x) came back as id %d", what, p->id, p->key, got);
		return -EINVAL;
	}
	return 0;
}

static void set_perm(struct ipc_perm *k, const IpcPermEntry *p)
{
	k->uid = p->uid;
	k->gid = p->gid;
	k->mode = p->mode;
}

static int restore_shm(const SysvShmEntry *s)
{
	const IpcPermEntry *p = s->perm;
	struct shmid_ds ds;
	int id, ret;

	if ((ret = set_next_id("shm", p->id)))
		return ret;
	id = shmget(p->key, s->size, IPC_CREAT | IPC_EXCL | 0600);
	if ((ret = check_id(id, p, "SysV shared memory")))
		return ret;
	if (shmctl(id, IPC_STAT, &ds))
		return pr_perror("SysV shared memory %d: IPC_STAT", id);
	set_perm(&ds.shm_perm, p);
	if (shmctl(id, IPC_SET, &ds))
		return pr_perror("SysV shared memory %d: cannot give it owner %u:%u and mode %o", id, p->uid,
				 p->gid, p->mode);
	return 0;
}

static int restore_shm_data(const SysvShmChunk *c)
{
	struct shmid_ds ds;
	uint8_t *p;

	if (shmctl(c->id, IPC_STAT, &ds) || c->offset > ds.shm_segsz || c->data.len > ds.shm_segsz - c->offset) {
		pr_err("ipc.img: a chunk of SysV shared memory %u does not fit it", c->id);
		return -EINVAL;
	}
	p = shmat(c->id, NULL, 0);
	if (p == (void *)-1)
		return pr_perror("SysV shared memory %u: cannot attach it to fill it", c->id);
	memcpy(p + c->offset, c->data.data, c->data.len);
	shmdt(p);
	return 0;
}

static int restore_msg(const SysvMsgEntry *m)
{
	const IpcPermEntry *p = m->perm;
	_cleanup_free_ struct { long type; char text[MSG_MAX_LEN]; } *buf = malloc(sizeof(*buf));
	struct msqid_ds ds;
	int id, ret;

	if (!buf)
		return -ENOMEM;
	if ((ret = set_next_id("msg", p->id)))
		return ret;
	id = msgget(p->key, IPC_CREAT | IPC_EXCL | 0600);
	if ((ret = check_id(id, p, "SysV message queue")))
		return ret;
	if (msgctl(id, IPC_STAT, &ds))
		return pr_perror("SysV message queue %d: IPC_STAT", id);
	ds.msg_qbytes = m->qbytes;
	if (msgctl(id, IPC_SET, &ds))
		return pr_perror("SysV message queue %d: cannot set its size limit to %lu", id, m->qbytes);
	for (size_t i = 0; i < m->n_msgs; i++) {
		const SysvMsg *sm = m->msgs[i];

		if (sm->data.len > MSG_MAX_LEN)
			return -EINVAL;
		buf->type = sm->type;
		memcpy(buf->text, sm->data.data, sm->data.len);
		if (msgsnd(id, buf, sm->data.len, IPC_NOWAIT))
			return pr_perror("SysV message queue %d: cannot queue message %zu", id, i);
	}
	set_perm(&ds.msg_perm, p);
	if (msgctl(id, IPC_SET, &ds))
		return pr_perror("SysV message queue %d: cannot give it owner %u:%u and mode %o", id, p->uid,
				 p->gid, p->mode);
	return 0;
}

static int restore_sem(const SysvSemEntry *s)
{
	const IpcPermEntry *p = s->perm;
	_cleanup_free_ unsigned short *vals = calloc(s->n_values + 1, sizeof(*vals));
	struct semid_ds ds;
	int id, ret;

	if (!vals)
		return -ENOMEM;
	if ((ret = set_next_id("sem", p->id)))
		return ret;
	id = semget(p->key, s->n_values, IPC_CREAT | IPC_EXCL | 0600);
	if ((ret = check_id(id, p, "SysV semaphore set")))
		return ret;
	for (size_t i = 0; i < s->n_values; i++)
		vals[i] = s->values[i];
	if (semctl(id, 0, SETALL, (union semun){ .array = vals }))
		return pr_perror("SysV semaphore set %d: cannot set its values", id);
	if (semctl(id, 0, IPC_STAT, (union semun){ .buf = &ds }))
		return pr_perror("SysV semaphore set %d: IPC_STAT", id);
	set_perm(&ds.sem_perm, p);
	if (semctl(id, 0, IPC_SET, (union semun){ .buf = &ds }))
		return pr_perror("SysV semaphore set %d: cannot give it owner %u:%u and mode %o", id, p->uid,
				 p->gid, p->mode);
	return 0;
}

static int restore_mq(const MqueueEntry *m)
{
	struct mq_attr at = { .mq_maxmsg = m->maxmsg, .mq_msgsize = m->msgsize };
	char qname[NAME_MAX + 2];
	mqd_t q;
	int ret = 0;

	snprintf(qname, sizeof(qname), "/%s", m->name);
	q = mq_open(qname, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, m->mode, &at);
	if (q < 0)
		return pr_perror("cannot make POSIX message queue %s", qname);
	for (size_t i = 0; i < m->n_msgs && !ret; i++)
		if (mq_send(q, (char *)m->msgs[i]->data.data, m->msgs[i]->data.len, m->msgs[i]->prio))
			ret = pr_perror("POSIX message queue %s: cannot queue message %zu", qname, i);
	if (!ret && (fchown(q, m->uid, m->gid) || fchmod(q, m->mode)))
		ret = pr_perror("POSIX message queue %s: cannot give it owner %u:%u and mode %o", qname, m->uid,
				m->gid, m->mode);
	mq_close(q);
	return ret;
}

/* ipc.img: a POSIX queue's name is one name of the namespace's mqueue file system */
int ipc_validate_entry(const IpcEntry *e, const char *where)
{
	return e->mq ? door_name(e->mq->name, NAME_MAX, "%s: mq.name", where) : 0;
}

static int check_ipc(const ProtobufCMessage *m, const char *where)
{
	return ipc_validate_entry((const IpcEntry *)m, where);
}

int ipc_validate(const struct restore_ctx *ctx)
{
	if (!ctx->ns || !(ctx->ns->flags & CLONE_NEWIPC))
		return 0;
	return validate_image(ctx->dirfd, IMG_IPC, 0, false, check_ipc);
}

int ipc_restore(struct restore_ctx *ctx)
{
	struct img *img;
	ProtobufCMessage *msg;
	int ret;

	if (!ctx->ns || !(ctx->ns->flags & CLONE_NEWIPC))
		return 0;
	img = img_open_pre(&ctx->pre_imgs, ctx->dirfd, IMG_IPC, 0, false);
	if (!img)
		return -EIO;
	while ((ret = img_read(img, &msg)) == 1) {
		const IpcEntry *e = (const IpcEntry *)msg;

		if (e->shm)
			ret = restore_shm(e->shm);
		else if (e->shm_data)
			ret = restore_shm_data(e->shm_data);
		else if (e->msg)
			ret = restore_msg(e->msg);
		else if (e->sem)
			ret = restore_sem(e->sem);
		else if (e->mq)
			ret = restore_mq(e->mq);
		img_free_msg(IMG_IPC, msg);
		if (ret)
			break;
	}
	img_close(img);
	return ret < 0 ? ret : 0;
}

/* ------------------------------------------------- POSIX message queue fds */

static bool mq_match(const struct fd_parms *p)
{
	struct statfs sf;

	return S_ISREG(p->st.st_mode) && !(p->flags & O_PATH) && !fstatfs(p->lfd, &sf) && sf.f_type == MQUEUE_MAGIC;
}

static int mq_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	MqFdEntry *e = arena_new(&ctx->arena, MqFdEntry);
	const char *notify = fdinfo_field(p->fdinfo, "NOTIFY:");

	if (!e)
		return -ENOMEM;
	if (!(ctx->ns_flags & CLONE_NEWIPC)) {
		pr_err("pid %d fd %d: POSIX message queue %s of cryo's own IPC namespace: dump a container that has its own",
		       p->pid, p->fd, p->link);
		return -ENOTSUP;
	}
	if (notify && atoi(notify)) {
		pr_err("pid %d fd %d: POSIX message queue %s has a notification registered: not supported yet",
		       p->pid, p->fd, p->link);
		return -ENOTSUP;
	}
	mq_fd_entry__init(e);
	e->name = arena_strdup(&ctx->arena, p->link);
	e->flags = p->flags;
	if (!e->name)
		return -ENOMEM;
	fe->mq = e;
	return 0;
}

/* as mq_open(3) takes it: "/" and one name */
static int mq_fd_validate(const FileEntry *fe, const char *where)
{
	if (!fe->mq)
		return 0;
	return door_abspath(fe->mq->name, NAME_MAX + 1, "%s: mq.name", where) ?:
	       door_name(fe->mq->name + 1, NAME_MAX, "%s: mq.name", where);
}

static int mq_fd_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	mqd_t q;

	if (!fe->mq) {
		pr_err("files.img: entry %u is a message queue without its details", fe->id);
		return -EINVAL;
	}
	q = mq_open(fe->mq->name, (fe->mq->flags & (O_ACCMODE | O_NONBLOCK)) | O_CLOEXEC);
	if (q < 0)
		return pr_perror("pid %d fd %d: cannot open POSIX message queue %s", pid, fdnum, fe->mq->name);
	return q;
}

const struct fd_kind_ops mq_fd_ops = {
	.kind = FD_KIND__MQUEUE,
	.name = "POSIX message queue",
	.match = mq_match,
	.dump = mq_dump,
	.validate = mq_fd_validate,
	.open = mq_fd_open,
};
