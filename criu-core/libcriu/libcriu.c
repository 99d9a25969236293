/*
 * cryo's libcriu: libcriu.so.2, the C library container runtimes (crun)
 * checkpoint through, written for cryo from the interface in criu.h.
 *
 * An option set is the RpcOpts message being built (images/rpc.proto) and
 * how to reach the checkpoint tool. Each operation runs "cryo swrk FD" (or
 * the service binary named) on one end of a SOCK_SEQPACKET socketpair,
 * sends one RpcReq with the options, answers each NOTIFY response through
 * the notify callback (the "orphan-pts-master" one carries the pty master,
 * kept for criu_get_orphan_pts_master_fd), takes the final response, closes
 * its end (swrk then exits) and waits for the child.
 *
 * Errors: the library's own are one "libcriu: ..." line on stderr where they
 * happen. A request cryo fails: cryo has printed its reason ("cryo: ...")
 * on the stderr it shares with the caller, so only its code comes back; a
 * service reached through a socket does not share it, and its reason
 * (cr_errmsg) is printed here.
 *
 * The global API works on one option set, made by criu_init_opts: that is
 * libcriu's documented model, and the only state kept outside a caller's
 * criu_opts.
 */
#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criu.h"
#include "rpc.pb-c.h"

extern char **environ;

#define EXPORT __attribute__((visibility("default")))

#define DEFAULT_SERVICE_BINARY	"cryo"
#define DEFAULT_SERVICE_ADDRESS	"/var/run/criu_service.socket"

struct criu_opts {
	RpcOpts *rpc;			/* sent with dump, pre-dump and restore */
	enum criu_service_comm comm;
	char *service_binary;		/* CRIU_COMM_BIN; NULL: cryo from PATH */
	char *service_address;		/* CRIU_COMM_SK */
	int service_fd;			/* CRIU_COMM_FD: the caller's */
	int (*notify)(char *action, criu_notify_arg_t na);
	int orphan_pts_master_fd;	/* from the last "orphan-pts-master" notification */
};

static criu_opts *global_opts;

/* a connection to the tool for one operation */
struct conn {
	int sk;
	pid_t pid;			/* the swrk child; 0 if the tool is not ours */
	bool own_sk;
};

static void __attribute__((format(printf, 2, 0))) say(int err, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	n = snprintf(line, sizeof(line), "libcriu: ");
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (err && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, ": %s", strerror(err));
	if (n >= (int)sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
		return;	/* nowhere left to tell it */
}

/* one line on stderr; returns code (a -errno, or 0 where the caller decides) */
static int __attribute__((format(printf, 2, 3))) fail(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(0, fmt, ap);
	va_end(ap);
	return code;
}

/* one line on stderr ending with errno's text; returns -errno */
static int __attribute__((format(printf, 1, 2))) fail_errno(const char *fmt, ...)
{
	int err = errno ?: EIO;
	va_list ap;

	va_start(ap, fmt);
	say(err, fmt, ap);
	va_end(ap);
	return -err;
}

static int not_supported(const char *what)
{
	return fail(-ENOTSUP, "%s: not supported by cryo", what);
}

/* ---- option sets ---- */

/* append item to a repeated field (arr with n entries): 0 or -ENOMEM */
#define APPEND(arr, n, item) ({							\
	__typeof__(arr) __a = realloc((arr), ((n) + 1) * sizeof(*__a));	\
	if (__a) {								\
		(arr) = __a;							\
		(arr)[(n)++] = (item);						\
	}									\
	__a ? 0 : -ENOMEM;							\
})

static int set_str(char **field, const char *val)
{
	char *s = NULL;

	if (val && !(s = strdup(val)))
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

static int add_str(char ***arr, size_t *n, const char *val)
{
	char *s;

	if (!val)
		return -EINVAL;
	if (!(s = strdup(val)))
		return -ENOMEM;
	if (APPEND(*arr, *n, s)) {
		free(s);
		return -ENOMEM;
	}
	return 0;
}

EXPORT int criu_local_init_opts(criu_opts **out)
{
	criu_opts *o = calloc(1, sizeof(*o));
	RpcOpts *rpc = malloc(sizeof(*rpc));

	if (!o || !rpc) {
		free(o);
		free(rpc);
		return fail(-ENOMEM, "cannot allocate an option set");
	}
	rpc_opts__init(rpc);
	rpc->has_images_dir_fd = true;	/* -1 until set: CRIU's schema requires it */
	o->rpc = rpc;
	o->comm = CRIU_COMM_BIN;
	o->service_fd = -1;
	o->orphan_pts_master_fd = -1;
	*out = o;
	return 0;
}

EXPORT void criu_local_free_opts(criu_opts *o)
{
	if (!o)
		return;
	/* every string, list and message in it was malloc'ed, as protobuf-c's own unpacker does */
	rpc_opts__free_unpacked(o->rpc, NULL);
	free(o->service_binary);
	free(o->service_address);
	if (o->orphan_pts_master_fd >= 0)
		close(o->orphan_pts_master_fd);
	free(o);
}

EXPORT int criu_local_set_service_comm(criu_opts *o, enum criu_service_comm comm)
{
	if (comm != CRIU_COMM_SK && comm != CRIU_COMM_FD && comm != CRIU_COMM_BIN)
		return fail(-EINVAL, "service comm %d: not one of CRIU_COMM_SK, _FD, _BIN", comm);
	o->comm = comm;
	return 0;
}

EXPORT int criu_local_set_service_address(criu_opts *o, const char *path)
{
	int ret = set_str(&o->service_address, path);

	if (!ret)
		o->comm = CRIU_COMM_SK;
	return ret;
}

EXPORT void criu_local_set_service_fd(criu_opts *o, int fd)
{
	o->service_fd = fd;
	o->comm = CRIU_COMM_FD;
}

EXPORT int criu_local_set_service_binary(criu_opts *o, const char *path)
{
	int ret = set_str(&o->service_binary, path);

	if (!ret)
		o->comm = CRIU_COMM_BIN;
	return ret;
}

EXPORT void criu_local_set_pid(criu_opts *o, int pid)
{
	o->rpc->has_pid = true;
	o->rpc->pid = pid;
}

EXPORT void criu_local_set_images_dir_fd(criu_opts *o, int fd)
{
	o->rpc->has_images_dir_fd = true;
	o->rpc->images_dir_fd = fd;
}

EXPORT void criu_local_set_work_dir_fd(criu_opts *o, int fd)
{
	o->rpc->has_work_dir_fd = true;
	o->rpc->work_dir_fd = fd;
}

EXPORT int criu_local_set_parent_images(criu_opts *o, const char *path)
{
	return set_str(&o->rpc->parent_img, path);
}

/* the yes/no options, each one RpcOpts field of the same name */
#define BOOL_OPT(name)								\
	EXPORT void criu_local_set_##name(criu_opts *o, bool val)		\
	{									\
		o->rpc->has_##name = true;					\
		o->rpc->name = val;						\
	}
BOOL_OPT(leave_running)
BOOL_OPT(ext_unix_sk)
BOOL_OPT(tcp_established)
BOOL_OPT(tcp_skip_in_flight)
BOOL_OPT(tcp_close)
BOOL_OPT(evasive_devices)
BOOL_OPT(shell_job)
BOOL_OPT(orphan_pts_master)
BOOL_OPT(file_locks)
BOOL_OPT(track_mem)
BOOL_OPT(auto_dedup)
BOOL_OPT(link_remap)
BOOL_OPT(lazy_pages)
BOOL_OPT(manage_cgroups)
BOOL_OPT(auto_ext_mnt)
BOOL_OPT(ext_sharing)
BOOL_OPT(ext_masters)

/*
 * Tuning CRIU has and cryo does without: nothing to send. weak_sysctls
 * (cryo restores no sysctl it could fail on), force_irmap and ghost_limit
 * (inotify paths and deleted files are kept their own way), cpu_cap (no CPU
 * compatibility check to tune), pidfd_store_sk (pre-dumps find their tasks
 * by pid and start time), mntns_compat_mode (one way of restoring mounts).
 */
EXPORT void criu_local_set_weak_sysctls(criu_opts *o, bool val) {}
EXPORT void criu_local_set_force_irmap(criu_opts *o, bool val) {}
EXPORT void criu_local_set_ghost_limit(criu_opts *o, unsigned int limit) {}
EXPORT void criu_local_set_cpu_cap(criu_opts *o, unsigned int cap) {}
EXPORT void criu_local_set_pidfd_store_sk(criu_opts *o, int sk) {}
EXPORT void criu_local_set_mntns_compat_mode(criu_opts *o, bool val) {}

EXPORT void criu_local_set_log_level(criu_opts *o, int level)
{
	o->rpc->has_log_level = true;
	o->rpc->log_level = level;
}

EXPORT int criu_local_set_log_file(criu_opts *o, const char *name)
{
	return set_str(&o->rpc->log_file, name);
}

EXPORT int criu_local_set_root(criu_opts *o, const char *root)
{
	return set_str(&o->rpc->root, root);
}

EXPORT void criu_local_set_manage_cgroups_mode(criu_opts *o, enum criu_cg_mode mode)
{
	if (mode < CRIU_CG_MODE_IGNORE || mode > CRIU_CG_MODE_DEFAULT) {
		fail(-EINVAL, "manage_cgroups_mode %d: no such mode; not set", mode);
		return;
	}
	/* the same numbers in the RPC */
	o->rpc->has_manage_cgroups_mode = true;
	o->rpc->manage_cgroups_mode = (RpcCgMode)mode;
}

EXPORT int criu_local_set_freeze_cgroup(criu_opts *o, const char *name)
{
	return set_str(&o->rpc->freeze_cgroup, name);
}

EXPORT int criu_local_set_lsm_profile(criu_opts *o, const char *name)
{
	return set_str(&o->rpc->lsm_profile, name);
}

EXPORT void criu_local_set_timeout(criu_opts *o, unsigned int timeout)
{
	o->rpc->has_timeout = true;
	o->rpc->timeout = timeout;
}

EXPORT int criu_local_set_network_lock(criu_opts *o, enum criu_network_lock_method method)
{
	if (method < CRIU_NETWORK_LOCK_IPTABLES || method > CRIU_NETWORK_LOCK_SKIP)
		return fail(-EINVAL, "network lock method %d: no such method", method);
	o->rpc->has_network_lock = true;
	o->rpc->network_lock = (RpcNetLock)method;
	return 0;
}

EXPORT int criu_local_set_page_server_address_port(criu_opts *o, const char *address, int port)
{
	RpcPageServerInfo *ps = o->rpc->ps;
	int ret;

	if (!ps) {
		if (!(ps = malloc(sizeof(*ps))))
			return -ENOMEM;
		rpc_page_server_info__init(ps);
		o->rpc->ps = ps;
	}
	if ((ret = set_str(&ps->address, address)))
		return ret;
	ps->has_port = true;
	ps->port = port;
	return 0;
}

EXPORT int criu_local_add_ext_mount(criu_opts *o, const char *key, const char *val)
{
	RpcExtMount *m;

	if (!key || !val)
		return -EINVAL;
	if (!(m = malloc(sizeof(*m))))
		return -ENOMEM;
	rpc_ext_mount__init(m);
	m->key = strdup(key);
	m->val = strdup(val);
	if (!m->key || !m->val || APPEND(o->rpc->ext_mnt, o->rpc->n_ext_mnt, m)) {
		rpc_ext_mount__free_unpacked(m, NULL);
		return -ENOMEM;
	}
	return 0;
}

EXPORT int criu_local_add_veth_pair(criu_opts *o, const char *in, const char *out)
{
	RpcVethPair *v;

	if (!in || !out)
		return -EINVAL;
	if (!(v = malloc(sizeof(*v))))
		return -ENOMEM;
	rpc_veth_pair__init(v);
	v->if_in = strdup(in);
	v->if_out = strdup(out);
	if (!v->if_in || !v->if_out || APPEND(o->rpc->veths, o->rpc->n_veths, v)) {
		rpc_veth_pair__free_unpacked(v, NULL);
		return -ENOMEM;
	}
	return 0;
}

EXPORT int criu_local_add_cg_root(criu_opts *o, const char *ctrl, const char *path)
{
	RpcCgroupRoot *r;

	if (!path)
		return -EINVAL;
	if (!(r = malloc(sizeof(*r))))
		return -ENOMEM;
	rpc_cgroup_root__init(r);
	r->path = strdup(path);
	if (ctrl)
		r->ctrl = strdup(ctrl);
	if (!r->path || (ctrl && !r->ctrl) || APPEND(o->rpc->cg_root, o->rpc->n_cg_root, r)) {
		rpc_cgroup_root__free_unpacked(r, NULL);
		return -ENOMEM;
	}
	return 0;
}

EXPORT int criu_local_add_inherit_fd(criu_opts *o, int fd, const char *key)
{
	RpcInheritFd *f;

	if (!key || fd < 0)
		return -EINVAL;
	if (!(f = malloc(sizeof(*f))))
		return -ENOMEM;
	rpc_inherit_fd__init(f);
	f->fd = fd;
	f->key = strdup(key);
	if (!f->key || APPEND(o->rpc->inherit_fd, o->rpc->n_inherit_fd, f)) {
		rpc_inherit_fd__free_unpacked(f, NULL);
		return -ENOMEM;
	}
	return 0;
}

EXPORT int criu_local_join_ns_add(criu_opts *o, const char *ns, const char *ns_file, const char *extra_opt)
{
	RpcJoinNs *j;

	if (!ns || !ns_file)
		return -EINVAL;
	if (!(j = malloc(sizeof(*j))))
		return -ENOMEM;
	rpc_join_ns__init(j);
	j->ns = strdup(ns);
	j->ns_file = strdup(ns_file);
	if (extra_opt)
		j->extra_opt = strdup(extra_opt);
	if (!j->ns || !j->ns_file || (extra_opt && !j->extra_opt) ||
	    APPEND(o->rpc->join_ns, o->rpc->n_join_ns, j)) {
		rpc_join_ns__free_unpacked(j, NULL);
		return -ENOMEM;
	}
	return 0;
}

EXPORT int criu_local_add_skip_mnt(criu_opts *o, const char *mnt)
{
	return add_str(&o->rpc->skip_mnt, &o->rpc->n_skip_mnt, mnt);
}

EXPORT int criu_local_add_external(criu_opts *o, const char *key)
{
	return add_str(&o->rpc->external, &o->rpc->n_external, key);
}

/* CRIU options that images/rpc.proto does not carry, as cryo has no use for them */
EXPORT int criu_local_add_unix_sk(criu_opts *o, unsigned int inode)
{
	return not_supported("unix_sk (use external)");
}

EXPORT int criu_local_set_exec_cmd(criu_opts *o, int argc, char *argv[])
{
	return not_supported("exec_cmd");
}

EXPORT int criu_local_add_enable_fs(criu_opts *o, const char *fs)
{
	return not_supported("enable_fs");
}

EXPORT int criu_local_add_irmap_path(criu_opts *o, const char *path)
{
	return not_supported("irmap_scan_paths");
}

EXPORT int criu_local_set_lsm_mount_context(criu_opts *o, const char *name)
{
	return not_supported("lsm_mount_context");
}

EXPORT int criu_local_add_cg_props(criu_opts *o, const char *stream)
{
	return not_supported("cgroup_props");
}

EXPORT int criu_local_add_cg_props_file(criu_opts *o, const char *path)
{
	return not_supported("cgroup_props_file");
}

EXPORT int criu_local_add_cg_dump_controller(criu_opts *o, const char *name)
{
	return not_supported("cgroup_dump_controller");
}

EXPORT int criu_local_add_cg_yard(criu_opts *o, const char *path)
{
	return not_supported("cgroup_yard");
}

EXPORT int criu_local_set_pre_dump_mode(criu_opts *o, enum criu_pre_dump_mode mode)
{
	/* cryo's pre-dumps always splice the pages out */
	return mode == CRIU_PRE_DUMP_SPLICE ? 0 : not_supported("pre_dump_mode READ");
}

EXPORT void criu_local_set_notify_cb(criu_opts *o, int (*cb)(char *action, criu_notify_arg_t na))
{
	o->notify = cb;
	o->rpc->has_notify_scripts = true;
	o->rpc->notify_scripts = cb != NULL;
}

EXPORT int criu_notify_pid(criu_notify_arg_t na)
{
	const RpcNotify *n = (const RpcNotify *)na;

	return n && n->has_pid ? n->pid : 0;
}

EXPORT int criu_local_get_orphan_pts_master_fd(criu_opts *o)
{
	return o->orphan_pts_master_fd;
}

/* ---- reaching the tool ---- */

/* DUMP, RESTORE, ...: a request type as CRIU's documents name it */
static const char *type_name(RpcType type)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&rpc_type__descriptor, type);

	return v ? v->name + strlen("RPC_") : "unknown";
}

static int spawn_swrk(criu_opts *o, struct conn *c)
{
	const char *bin = o->service_binary ?: DEFAULT_SERVICE_BINARY;
	posix_spawn_file_actions_t fa;
	char fd[16], *argv[4];
	int sv[2], ret;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return fail_errno("cannot make a socketpair to run %s swrk", bin);
	snprintf(fd, sizeof(fd), "%d", sv[1]);
	argv[0] = (char *)bin;
	argv[1] = "swrk";
	argv[2] = fd;
	argv[3] = NULL;
	/* the tool's end kept open across exec (a dup2 onto itself clears close-on-exec); ours not */
	if ((ret = posix_spawn_file_actions_init(&fa)) == 0) {
		if ((ret = posix_spawn_file_actions_adddup2(&fa, sv[1], sv[1])) == 0)
			ret = posix_spawnp(&pid, bin, &fa, NULL, argv, environ);
		posix_spawn_file_actions_destroy(&fa);
	}
	close(sv[1]);
	if (ret) {
		close(sv[0]);
		errno = ret;
		return fail_errno("cannot run %s swrk", bin);
	}
	*c = (struct conn){ .sk = sv[0], .pid = pid, .own_sk = true };
	return 0;
}

static int connect_service(criu_opts *o, struct conn *c)
{
	const char *path = o->service_address ?: DEFAULT_SERVICE_ADDRESS;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int sk;

	if (strlen(path) >= sizeof(sa.sun_path))
		return fail(-ENAMETOOLONG, "service address %s: too long for a unix socket", path);
	strcpy(sa.sun_path, path);
	sk = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sk < 0)
		return fail_errno("cannot make a socket to reach %s", path);
	if (connect(sk, (struct sockaddr *)&sa, sizeof(sa))) {
		int ret = fail_errno("cannot connect to the service socket %s (cryo runs as swrk, the default)", path);

		close(sk);
		return ret;
	}
	*c = (struct conn){ .sk = sk, .own_sk = true };
	return 0;
}

static int conn_open(criu_opts *o, struct conn *c)
{
	switch (o->comm) {
	case CRIU_COMM_BIN:
		return spawn_swrk(o, c);
	case CRIU_COMM_SK:
		return connect_service(o, c);
	case CRIU_COMM_FD:
		if (o->service_fd < 0)
			return fail(-EBADF, "service fd %d: not an fd", o->service_fd);
		*c = (struct conn){ .sk = o->service_fd };
		return 0;
	}
	return fail(-EINVAL, "service comm %d: not one of CRIU_COMM_SK, _FD, _BIN", o->comm);
}

/* our end closed (swrk exits on it) and the swrk child waited for: its wait status, or -1 */
static int conn_close(struct conn *c)
{
	int status = -1;

	if (c->own_sk && c->sk >= 0)
		close(c->sk);
	c->sk = -1;
	if (c->pid > 0)
		while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
			;
	c->pid = 0;
	return status;
}

static int send_req(struct conn *c, const RpcReq *req)
{
	size_t len = rpc_req__get_packed_size(req);
	uint8_t *buf = malloc(len ?: 1);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	rpc_req__pack(req, buf);
	do
		n = send(c->sk, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	free(buf);
	if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
		return -ECONNRESET;	/* the tool is gone: told with its exit status */
	if (n != (ssize_t)len)
		return fail_errno("cannot send the %s request", type_name(req->type));
	return 0;
}

/*
 * The next response, with the fd it carries (SCM_RIGHTS) in *fd or -1.
 * NULL on an error (*err; -ECONNRESET when the tool hung up).
 */
static RpcResp *recv_resp(struct conn *c, int *fd, int *err)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = { .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct iovec iov;
	struct cmsghdr *cm;
	RpcResp *resp;
	uint8_t *buf;
	ssize_t len, n;

	*fd = -1;
	do
		len = recv(c->sk, NULL, 0, MSG_PEEK | MSG_TRUNC);
	while (len < 0 && errno == EINTR);
	if (len <= 0) {
		*err = len == 0 || errno == ECONNRESET ? -ECONNRESET : fail_errno("cannot read a response");
		return NULL;
	}
	if (!(buf = malloc(len))) {
		*err = -ENOMEM;
		return NULL;
	}
	iov = (struct iovec){ buf, len };
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	do
		n = recvmsg(c->sk, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	for (cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
	if (n != len) {
		*err = n < 0 ? fail_errno("cannot read a response") :
			       fail(-EBADMSG, "a response of %zd bytes cut to %zd", len, n);
		resp = NULL;
	} else if (!(resp = rpc_resp__unpack(NULL, len, buf))) {
		*err = fail(-EBADMSG, "a response of %zd bytes that is not a criu_resp message", len);
	}
	free(buf);
	if (!resp && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return resp;
}

/* a hook point: the callback told, its yes or no sent back */
static int answer_notify(criu_opts *o, struct conn *c, RpcResp *resp, int fd)
{
	RpcReq ack = RPC_REQ__INIT;
	char *point = resp->notify ? resp->notify->script : NULL;
	int ret = 0;

	if (point && !strcmp(point, "orphan-pts-master") && fd >= 0) {
		if (o->orphan_pts_master_fd >= 0)
			close(o->orphan_pts_master_fd);
		o->orphan_pts_master_fd = fd;
	} else if (fd >= 0) {
		close(fd);
	}
	if (o->notify && point)
		ret = o->notify(point, (criu_notify_arg_t)resp->notify);
	ack.type = RPC_TYPE__RPC_NOTIFY;
	ack.has_notify_success = true;
	ack.notify_success = ret == 0;
	return send_req(c, &ack);
}

/* one request on c and its final response (*out), the notifications before it answered */
static int call(criu_opts *o, struct conn *c, const RpcReq *req, RpcResp **out)
{
	const char *type = type_name(req->type);
	RpcResp *resp;
	int ret, fd;

	if ((ret = send_req(c, req)))
		return ret;
	for (;;) {
		if (!(resp = recv_resp(c, &fd, &ret)))
			return ret;
		if (resp->type != RPC_TYPE__RPC_NOTIFY)
			break;
		ret = answer_notify(o, c, resp, fd);
		rpc_resp__free_unpacked(resp, NULL);
		if (ret)
			return ret;
	}
	if (fd >= 0)
		close(fd);
	if (resp->type != req->type) {
		ret = fail(-EBADMSG, "a %s response to a %s request", type_name(resp->type), type);
		rpc_resp__free_unpacked(resp, NULL);
		return ret;
	}
	if (!resp->success) {
		ret = resp->has_cr_errno && resp->cr_errno > 0 ? -resp->cr_errno : -EBADE;
		/* cryo swrk printed it on the stderr we share; a service does not */
		if (c->pid <= 0)
			fail(ret, "%s failed: %s", type, resp->cr_errmsg ?: "no reason given");
		rpc_resp__free_unpacked(resp, NULL);
		return ret;
	}
	*out = resp;
	return 0;
}

/*
 * The end of a connection (ret: what its requests came to; status: the
 * swrk child's wait status): a tool that hung up without answering is told
 * here, with how it ended.
 */
static int finish(criu_opts *o, const RpcReq *req, int ret, int status)
{
	const char *bin = o->service_binary ?: DEFAULT_SERVICE_BINARY;
	const char *type = type_name(req->type);

	if (ret != -ECONNRESET)
		return ret;
	if (o->comm != CRIU_COMM_BIN)
		fail(0, "the service closed the connection without answering the %s request", type);
	else if (status >= 0 && WIFEXITED(status))
		fail(0, "%s swrk exited with status %d without answering the %s request", bin, WEXITSTATUS(status), type);
	else if (status >= 0 && WIFSIGNALED(status))
		fail(0, "%s swrk was killed by signal %d before answering the %s request", bin, WTERMSIG(status), type);
	else
		fail(0, "%s swrk ended without answering the %s request", bin, type);
	return -ECOMM;
}

/* one request on a connection of its own; *out: its response, when it succeeded */
static int request(criu_opts *o, RpcType type, RpcResp **out)
{
	RpcReq req = RPC_REQ__INIT;
	struct conn c;
	int ret, status;

	req.type = type;
	if (type == RPC_TYPE__RPC_DUMP || type == RPC_TYPE__RPC_PRE_DUMP || type == RPC_TYPE__RPC_RESTORE)
		req.opts = o->rpc;
	if ((ret = conn_open(o, &c)))
		return ret;
	ret = call(o, &c, &req, out);
	status = conn_close(&c);
	return finish(o, &req, ret, status);
}

/* a request whose success is all there is to its answer */
static int request_ok(criu_opts *o, RpcType type)
{
	RpcResp *resp;
	int ret = request(o, type, &resp);

	if (!ret)
		rpc_resp__free_unpacked(resp, NULL);
	return ret;
}

/* ---- the operations ---- */

EXPORT int criu_local_check(criu_opts *o)
{
	return request_ok(o, RPC_TYPE__RPC_CHECK);
}

EXPORT int criu_local_dump(criu_opts *o)
{
	return request_ok(o, RPC_TYPE__RPC_DUMP);
}

EXPORT int criu_local_pre_dump(criu_opts *o)
{
	return request_ok(o, RPC_TYPE__RPC_PRE_DUMP);
}

EXPORT int criu_local_restore(criu_opts *o)
{
	RpcResp *resp;
	int ret = request(o, RPC_TYPE__RPC_RESTORE, &resp);

	if (ret)
		return ret;
	if (resp->restore && resp->restore->pid > 0)
		ret = resp->restore->pid;
	else
		ret = fail(-EBADMSG, "a RESTORE response without the restored pid");
	rpc_resp__free_unpacked(resp, NULL);
	return ret;
}

EXPORT int criu_local_restore_child(criu_opts *o)
{
	bool had = o->rpc->has_rst_sibling, was = o->rpc->rst_sibling;
	int ret;

	/* the tool's sibling is our child: only a tool that is our child itself */
	if (o->comm != CRIU_COMM_BIN)
		return fail(-EINVAL, "criu_restore_child: needs the tool run as swrk (the default), not a service");
	o->rpc->has_rst_sibling = true;
	o->rpc->rst_sibling = true;
	ret = criu_local_restore(o);
	o->rpc->has_rst_sibling = had;
	o->rpc->rst_sibling = was;
	return ret;
}

EXPORT int criu_local_dump_iters(criu_opts *o, int (*more)(criu_predump_info pi))
{
	RpcReq req = RPC_REQ__INIT;
	RpcResp *resp;
	struct conn c;
	int ret, status;

	if (!more)
		return fail(-EINVAL, "criu_dump_iters: no callback");
	if ((ret = conn_open(o, &c)))
		return ret;
	/* the options as they are at each request: the callback may set new directories */
	req.opts = o->rpc;
	req.type = RPC_TYPE__RPC_PRE_DUMP;
	req.has_keep_open = true;
	req.keep_open = true;
	for (;;) {
		if ((ret = call(o, &c, &req, &resp)))
			break;
		rpc_resp__free_unpacked(resp, NULL);
		if (req.type == RPC_TYPE__RPC_DUMP)
			break;
		if ((ret = more(NULL)) < 0)
			break;
		if (ret == 0) {
			req.type = RPC_TYPE__RPC_DUMP;
			req.keep_open = false;
		}
		ret = 0;
	}
	status = conn_close(&c);
	return finish(o, &req, ret, status);
}

EXPORT int criu_local_get_version(criu_opts *o)
{
	RpcResp *resp;
	int ret = request(o, RPC_TYPE__RPC_VERSION, &resp);

	if (ret)
		return ret;
	if (resp->version)
		ret = resp->version->major_number * 10000 + resp->version->minor_number * 100 +
		      (resp->version->has_sublevel ? resp->version->sublevel : 0);
	else
		ret = fail(-EBADMSG, "a VERSION response without the version");
	rpc_resp__free_unpacked(resp, NULL);
	return ret;
}

EXPORT int criu_local_check_version(criu_opts *o, int minimum)
{
	int version = criu_local_get_version(o);

	if (version < 0)
		return version;
	return version >= minimum;
}

EXPORT int criu_local_feature_check(criu_opts *o, struct criu_feature_check *features, size_t size)
{
	struct criu_feature_check f = { 0 };
	RpcFeatures want = RPC_FEATURES__INIT;
	RpcReq req = RPC_REQ__INIT;
	RpcResp *resp;
	struct conn c;
	int ret, status;

	if (!features || size > sizeof(f))
		return fail(-EINVAL, "criu_feature_check: a struct of %zu bytes, this library knows %zu", size, sizeof(f));
	memcpy(&f, features, size);
	want.has_mem_track = f.mem_track;
	want.mem_track = f.mem_track;
	want.has_lazy_pages = f.lazy_pages;
	want.lazy_pages = f.lazy_pages;
	want.has_pidfd_store = f.pidfd_store;
	want.pidfd_store = f.pidfd_store;
	req.type = RPC_TYPE__RPC_FEATURE_CHECK;
	req.features = &want;
	if ((ret = conn_open(o, &c)))
		return ret;
	ret = call(o, &c, &req, &resp);
	status = conn_close(&c);
	if ((ret = finish(o, &req, ret, status)))
		return ret;
	/* what was asked and not answered is not there */
	f.mem_track = f.mem_track && resp->features && resp->features->has_mem_track && resp->features->mem_track;
	f.lazy_pages = f.lazy_pages && resp->features && resp->features->has_lazy_pages && resp->features->lazy_pages;
	f.pidfd_store = f.pidfd_store && resp->features && resp->features->has_pidfd_store &&
			resp->features->pidfd_store;
	rpc_resp__free_unpacked(resp, NULL);
	memcpy(features, &f, size);
	return 0;
}

/* ---- the global option set ---- */

static int no_global_opts(void)
{
	return fail(-EINVAL, "criu_init_opts() has not been called");
}

EXPORT int criu_init_opts(void)
{
	criu_local_free_opts(global_opts);
	global_opts = NULL;
	return criu_local_init_opts(&global_opts);
}

EXPORT void criu_free_opts(void)
{
	criu_local_free_opts(global_opts);
	global_opts = NULL;
}

/* criu_NAME(args): criu_local_NAME(global_opts, args) */
#define GLOBAL_VOID(name, params, args)							EXPORT void criu_##name params							{											if (global_opts)									criu_local_##name args;							else											no_global_opts();						}
#define GLOBAL_INT(name, params, args)							EXPORT int criu_##name params							{											return global_opts ? criu_local_##name args : no_global_opts();		}
#define GLOBAL_BOOL(name) GLOBAL_VOID(set_##name, (bool val), (global_opts, val))

GLOBAL_INT(set_service_comm, (enum criu_service_comm comm), (global_opts, comm))
GLOBAL_INT(set_service_address, (const char *path), (global_opts, path))
GLOBAL_VOID(set_service_fd, (int fd), (global_opts, fd))
GLOBAL_INT(set_service_binary, (const char *path), (global_opts, path))
GLOBAL_VOID(set_pid, (int pid), (global_opts, pid))
GLOBAL_VOID(set_images_dir_fd, (int fd), (global_opts, fd))
GLOBAL_VOID(set_work_dir_fd, (int fd), (global_opts, fd))
GLOBAL_INT(set_parent_images, (const char *path), (global_opts, path))
GLOBAL_BOOL(leave_running)
GLOBAL_BOOL(ext_unix_sk)
GLOBAL_BOOL(tcp_established)
GLOBAL_BOOL(tcp_skip_in_flight)
GLOBAL_BOOL(tcp_close)
GLOBAL_BOOL(evasive_devices)
GLOBAL_BOOL(shell_job)
GLOBAL_BOOL(orphan_pts_master)
GLOBAL_BOOL(file_locks)
GLOBAL_BOOL(track_mem)
GLOBAL_BOOL(auto_dedup)
GLOBAL_BOOL(link_remap)
GLOBAL_BOOL(lazy_pages)
GLOBAL_BOOL(manage_cgroups)
GLOBAL_BOOL(auto_ext_mnt)
GLOBAL_BOOL(ext_sharing)
GLOBAL_BOOL(ext_masters)
GLOBAL_BOOL(weak_sysctls)
GLOBAL_BOOL(force_irmap)
GLOBAL_BOOL(mntns_compat_mode)
GLOBAL_VOID(set_ghost_limit, (unsigned int limit), (global_opts, limit))
GLOBAL_VOID(set_cpu_cap, (unsigned int cap), (global_opts, cap))
GLOBAL_VOID(set_pidfd_store_sk, (int sk), (global_opts, sk))
GLOBAL_VOID(set_log_level, (int level), (global_opts, level))
GLOBAL_INT(set_log_file, (const char *name), (global_opts, name))
GLOBAL_INT(set_root, (const char *root), (global_opts, root))
GLOBAL_VOID(set_manage_cgroups_mode, (enum criu_cg_mode mode), (global_opts, mode))
GLOBAL_INT(set_freeze_cgroup, (const char *name), (global_opts, name))
GLOBAL_INT(set_lsm_profile, (const char *name), (global_opts, name))
GLOBAL_INT(set_lsm_mount_context, (const char *name), (global_opts, name))
GLOBAL_VOID(set_timeout, (unsigned int timeout), (global_opts, timeout))
GLOBAL_INT(set_network_lock, (enum criu_network_lock_method method), (global_opts, method))
GLOBAL_INT(set_page_server_address_port, (const char *address, int port), (global_opts, address, port))
GLOBAL_INT(add_ext_mount, (const char *key, const char *val), (global_opts, key, val))
GLOBAL_INT(add_veth_pair, (const char *in, const char *out), (global_opts, in, out))
GLOBAL_INT(add_cg_root, (const char *ctrl, const char *path), (global_opts, ctrl, path))
GLOBAL_INT(add_inherit_fd, (int fd, const char *key), (global_opts, fd, key))
GLOBAL_INT(join_ns_add, (const char *ns, const char *ns_file, const char *extra_opt),
	   (global_opts, ns, ns_file, extra_opt))
GLOBAL_INT(add_skip_mnt, (const char *mnt), (global_opts, mnt))
GLOBAL_INT(add_external, (const char *key), (global_opts, key))
GLOBAL_INT(add_unix_sk, (unsigned int inode), (global_opts, inode))
GLOBAL_INT(set_exec_cmd, (int argc, char *argv[]), (global_opts, argc, argv))
GLOBAL_INT(add_enable_fs, (const char *fs), (global_opts, fs))
GLOBAL_INT(add_irmap_path, (const char *path), (global_opts, path))
GLOBAL_INT(set_pre_dump_mode, (enum criu_pre_dump_mode mode), (global_opts, mode))
GLOBAL_VOID(set_notify_cb, (int (*cb)(char *action, criu_notify_arg_t na)), (global_opts, cb))
GLOBAL_INT(get_orphan_pts_master_fd, (void), (global_opts))
GLOBAL_INT(check, (void), (global_opts))
GLOBAL_INT(dump, (void), (global_opts))
GLOBAL_INT(pre_dump, (void), (global_opts))
GLOBAL_INT(restore, (void), (global_opts))
GLOBAL_INT(restore_child, (void), (global_opts))
GLOBAL_INT(dump_iters, (int (*more)(criu_predump_info pi)), (global_opts, more))
GLOBAL_INT(get_version, (void), (global_opts))
GLOBAL_INT(check_version, (int minimum), (global_opts, minimum))
GLOBAL_INT(feature_check, (struct criu_feature_check *features, size_t size), (global_opts, features, size))
