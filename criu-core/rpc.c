/*
 * cryo swrk FD: CRIU's RPC, so that container runtimes drive cryo as they
 * drive CRIU (runc and go-criu, crun and LXC through libcriu).
 *
 * The client makes an AF_UNIX SOCK_SEQPACKET socketpair, runs "cryo swrk N"
 * with one end as fd N, and sends one RpcReq per datagram (images/rpc.proto).
 * Each request gets one RpcResp of its type, success or not; a failure
 * carries cryo's one-line reason in cr_errmsg (and cr_errno when it came
 * from a system call). During a dump or restore that asked for
 * notify_scripts, each notify point (notify.h) is a NOTIFY response the
 * client answers with a NOTIFY request (notify_success) before cryo goes
 * on; orphan-pts-master carries the pty master's fd (SCM_RIGHTS).
 * PAGE_SERVER starts a page server (a child, for one session) and answers
 * with its pid and port. Requests are served until the client closes its
 * end.
 *
 * The fds a request names (images_dir_fd, work_dir_fd) are the client's:
 * cryo opens them through /proc/<client>/fd/N, the client being the peer
 * of the socket. Logs go to log_file in the work directory only: cryo's
 * stdout and stderr are the client's (the restored tree's, in a restore).
 */
#define LOG_PREFIX "rpc: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cryo.h"
#include "door.h"
#include "kerndat.h"
#include "log.h"
#include "rpc.pb-c.h"
#include "util.h"

#define RPC_MAX_MSG (1 << 20)

struct rpc {
	int sk;
	pid_t client;
	RpcType type;			/* of the request being served */
	/* the request's paths, which opts point into */
	char images_dir[PATH_MAX], work_dir[PATH_MAX], page_server[300], port[16];
	struct str_list scripts;	/* swrk's own --action-script */
	struct str_list owned;		/* strings made for the request's options */
	int devnull;			/* where the log's stderr lines go */
};

static enum cg_mode rpc_cg_mode(RpcCgMode m)
{
	switch (m) {
	case RPC_CG_MODE__CG_IGNORE:
		return CG_MODE_IGNORE;
	case RPC_CG_MODE__CG_NONE:
		return CG_MODE_NONE;
	case RPC_CG_MODE__CG_PROPS:
		return CG_MODE_PROPS;
	case RPC_CG_MODE__CG_FULL:
		return CG_MODE_FULL;
	case RPC_CG_MODE__CG_STRICT:
		return CG_MODE_STRICT;
	default:
		return CG_MODE_SOFT;
	}
}

/* what a request's options held: the lists, and the strings made for them */
static void drop_opts(struct rpc *r, struct cryo_opts *o)
{
	struct str_list *lists[] = { &o->inherit_fds, &o->externals, &o->ext_mounts, &o->cg_roots };

	for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
		free(lists[i]->v);
	for (size_t i = 0; i < r->owned.n; i++)
		free((char *)r->owned.v[i]);
	free(r->owned.v);
	r->owned = (struct str_list){ 0 };
}

static int send_msg(struct rpc *r, const RpcResp *resp, int fd)
{
	size_t len = rpc_resp__get_packed_size(resp);
	_cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
	struct iovec iov = { buf, len };

	if (!buf)
		return -ENOMEM;
	rpc_resp__pack(resp, buf);
	if (sendmsg_fd(r->sk, &iov, 1, fd) != (ssize_t)len)
		return pr_perror("cannot send the %s response to the client", rpc_type__descriptor.values[resp->type].name);
	return 0;
}

/* the next request; NULL at the end (*err 0) or on an error (*err < 0) */
static RpcReq *recv_req(struct rpc *r, int *err)
{
	_cleanup_free_ uint8_t *buf = malloc(RPC_MAX_MSG);
	RpcReq *req;
	ssize_t n;

	*err = buf ? 0 : -ENOMEM;
	if (!buf)
		return NULL;
	do
		n = recv(r->sk, buf, RPC_MAX_MSG, MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		*err = pr_perror("cannot read a request from the client");
		return NULL;
	}
	if (n == 0)
		return NULL;
	if (n > RPC_MAX_MSG) {
		pr_err("a request of %zd bytes: more than %d", n, RPC_MAX_MSG);
		*err = -EMSGSIZE;
		return NULL;
	}
	req = rpc_req__unpack(NULL, n, buf);
	if (!req) {
		pr_err("a request of %zd bytes that is not a criu_req message", n);
		*err = -EBADMSG;
	}
	return req;
}

/* a notify point (notify.h): tell the client and wait for its yes */
static int rpc_notify(void *arg, const char *point, pid_t pid, int fd)
{
	struct rpc *r = arg;
	RpcNotify nt = RPC_NOTIFY__INIT;
	RpcResp resp = RPC_RESP__INIT;
	RpcReq *req;
	int ret;

	nt.script = (char *)point;
	nt.has_pid = pid > 0;
	nt.pid = pid;
	resp.type = RPC_TYPE__RPC_NOTIFY;
	resp.success = true;
	resp.notify = &nt;
	if ((ret = send_msg(r, &resp, fd)))
		return ret;
	req = recv_req(r, &ret);
	if (!req) {
		if (!ret)
			pr_err("the client hung up instead of answering the %s notification", point);
		return ret ?: -ECONNRESET;
	}
	if (req->type != RPC_TYPE__RPC_NOTIFY) {
		pr_err("the client answered the %s notification with a %s request", point,
		       rpc_type__descriptor.values[req->type].name);
		ret = -EPROTO;
	} else if (!req->notify_success) {
		pr_err("the client refused the %s notification", point);
		ret = -ECANCELED;
	}
	rpc_req__free_unpacked(req, NULL);
	return ret;
}

/* a string made for an option list, freed with the request */
static int __attribute__((format(printf, 3, 4))) add_owned(struct rpc *r, struct str_list *l, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	if (str_list_add(&r->owned, s)) {
		free(s);
		return -ENOMEM;
	}
	return str_list_add(l, s);
}

/* the client's fd N as a path cryo can open: the directory it names, or its /proc link */
static int client_dir(struct rpc *r, int fd, const char *what, char *out, size_t len)
{
	char link[64];
	struct stat a, b;

	snprintf(link, sizeof(link), "/proc/%d/fd/%d", r->client, fd);
	if (stat(link, &a))
		return pr_perror("%s: the client's fd %d", what, fd);
	if (!S_ISDIR(a.st_mode)) {
		pr_err("%s: the client's fd %d is not a directory", what, fd);
		return -ENOTDIR;
	}
	/* its path here if it is the same directory (relative paths stay readable), else the link */
	if (len >= PATH_MAX && realpath(link, out) && !stat(out, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		return 0;
	snprintf(out, len, "%s", link);
	return 0;
}

/*
 * The names and paths of a request through the door: the client's
 * directories come as fds; the host paths it gives (the root, a parent
 * directory, an external mount's source) are its to give, checked for
 * their form; names of devices and files as the kernel takes them.
 */
static int check_request(const struct rpc *r, const RpcOpts *ro)
{
	bool dump = r->type != RPC_TYPE__RPC_RESTORE;
	int ret = (ro->images_dir_fd < 0 && ro->images_dir ?
		   door_abspath(ro->images_dir, DOOR_PATH_MAX, "images_dir") : 0) ?:
		  (ro->log_file ? door_name(ro->log_file, DOOR_NAME_MAX, "log_file") : 0) ?:
		  (ro->root ? door_abspath(ro->root, DOOR_PATH_MAX, "root") : 0) ?:
		  (ro->parent_img ? door_path(ro->parent_img, DOOR_PATH_MAX, "parent_img") : 0) ?:
		  (ro->freeze_cgroup ? door_abspath(ro->freeze_cgroup, DOOR_PATH_MAX, "freeze_cgroup") : 0) ?:
		  (ro->config_file ? door_text(ro->config_file, DOOR_PATH_MAX, "config_file") : 0) ?:
		  (ro->ps && ro->ps->address ? door_text(ro->ps->address, 255, "ps.address") : 0);

	for (size_t i = 0; !ret && i < ro->n_veths; i++)
		ret = door_ifname(ro->veths[i]->if_in, "veths[%zu].if_in", i) ?:
		      door_ifname(ro->veths[i]->if_out, "veths[%zu].if_out", i);
	/* dump: a mountpoint of the tree and its key; restore: a key and the host directory it binds */
	for (size_t i = 0; !ret && i < ro->n_ext_mnt; i++)
		ret = dump ? door_abspath(ro->ext_mnt[i]->key, DOOR_PATH_MAX, "ext_mnt[%zu].key", i) ?:
			     door_text(ro->ext_mnt[i]->val, DOOR_PATH_MAX, "ext_mnt[%zu].val", i) :
			     door_text(ro->ext_mnt[i]->key, DOOR_PATH_MAX, "ext_mnt[%zu].key", i) ?:
			     door_abspath(ro->ext_mnt[i]->val, DOOR_PATH_MAX, "ext_mnt[%zu].val", i);
	for (size_t i = 0; !ret && i < ro->n_inherit_fd; i++)
		ret = door_text(ro->inherit_fd[i]->key, DOOR_PATH_MAX, "inherit_fd[%zu].key", i);
	for (size_t i = 0; !ret && i < ro->n_external; i++)
		ret = door_text(ro->external[i], DOOR_PATH_MAX, "external[%zu]", i);
	for (size_t i = 0; !ret && i < ro->n_cg_root; i++)
		ret = (ro->cg_root[i]->ctrl ? door_text(ro->cg_root[i]->ctrl, 127, "cg_root[%zu].ctrl", i) : 0) ?:
		      door_abspath(ro->cg_root[i]->path, DOOR_PATH_MAX, "cg_root[%zu].path", i);
	return ret;
}

/*
 * A request's options as cryo's. Those that change nothing here are taken
 * as they come; those cryo cannot honour are refused by name.
 */
static int take_opts(struct rpc *r, const RpcOpts *ro, struct cryo_opts *o)
{
	int ret;

	if (!ro) {
		pr_err("a %s request without options", rpc_type__descriptor.values[r->type].name);
		return -EINVAL;
	}
	if ((ret = check_request(r, ro)))
		return ret;
	if (ro->images_dir_fd >= 0) {
		if ((ret = client_dir(r, ro->images_dir_fd, "images_dir_fd", r->images_dir, sizeof(r->images_dir))))
			return ret;
		o->images_dir = r->images_dir;
	} else if (ro->images_dir) {
		o->images_dir = ro->images_dir;
	} else {
		pr_err("no images directory: set images_dir_fd");
		return -EINVAL;
	}
	if (ro->has_work_dir_fd) {
		if ((ret = client_dir(r, ro->work_dir_fd, "work_dir_fd", r->work_dir, sizeof(r->work_dir))))
			return ret;
		o->work_dir = r->work_dir;
	}
	o->pid = ro->has_pid ? ro->pid : 0;
	o->leave_running = ro->leave_running;
	o->shell_job = ro->shell_job;
	o->orphan_pts_master = ro->orphan_pts_master;
	o->tcp_established = ro->tcp_established;
	o->lazy_pages = ro->lazy_pages;
	o->auto_dedup = ro->auto_dedup;
	o->rst_sibling = ro->rst_sibling;
	o->root = ro->root;
	o->prev_images_dir = ro->parent_img;
	o->secret_file = default_secret_file();
	if (ro->ps && (ro->ps->address || ro->ps->has_port)) {
		if (ro->ps->has_fd) {
			pr_err("ps.fd: a page server connection made by the client is not supported; give address and port");
			return -ENOTSUP;
		}
		if (ro->lazy_pages && r->type == RPC_TYPE__RPC_DUMP) {
			/* a lazy dump serves the memory it keeps there itself (runc checkpoint --lazy-pages) */
			snprintf(r->port, sizeof(r->port), "%d", ro->ps->port);
			o->address = ro->ps->address;
			o->port = r->port;
		} else {
			snprintf(r->page_server, sizeof(r->page_server), "%s:%d", ro->ps->address ?: "127.0.0.1",
				 ro->ps->port);
			o->page_server = r->page_server;
		}
	}
	o->action_scripts = r->scripts;
	o->file_locks = ro->file_locks;
	o->link_remap = ro->link_remap;
	o->ext_unix_sk = ro->ext_unix_sk;
	o->tcp_skip_in_flight = ro->tcp_skip_in_flight;
	o->evasive_devices = ro->evasive_devices;
	o->freeze_cgroup = ro->freeze_cgroup;
	o->empty_ns = ro->empty_ns;
	if (ro->n_join_ns || ro->n_skip_mnt || ro->has_status_fd || ro->lsm_profile) {
		pr_err("%s: not supported yet", ro->n_join_ns ? "join_ns" : ro->n_skip_mnt ? "skip_mnt" :
		       ro->has_status_fd ? "status_fd" : "lsm_profile");
		return -ENOTSUP;
	}
	/* the older form of external veth[IF]:HOST */
	for (size_t i = 0; i < ro->n_veths; i++)
		if ((ret = add_owned(r, &o->externals, "veth[%s]:%s", ro->veths[i]->if_in, ro->veths[i]->if_out)))
			return ret;
	if (ro->config_file && !access(ro->config_file, F_OK))
		pr_warn("config_file %s: cryo does not read CRIU configuration files; ignored", ro->config_file);
	for (size_t i = 0; i < ro->n_ext_mnt; i++)
		if ((ret = add_owned(r, &o->ext_mounts, "%s:%s", ro->ext_mnt[i]->key, ro->ext_mnt[i]->val)))
			return ret;
	for (size_t i = 0; i < ro->n_inherit_fd; i++)
		if ((ret = add_owned(r, &o->inherit_fds, "fd[%d]:%s", ro->inherit_fd[i]->fd, ro->inherit_fd[i]->key)))
			return ret;
	for (size_t i = 0; i < ro->n_external; i++)
		if ((ret = str_list_add(&o->externals, ro->external[i])))
			return ret;
	if (ro->manage_cgroups || ro->has_manage_cgroups_mode)
		o->manage_cgroups = ro->has_manage_cgroups_mode ? rpc_cg_mode(ro->manage_cgroups_mode) : CG_MODE_SOFT;
	/* "CTRL:PATH"; without ctrl, every hierarchy */
	for (size_t i = 0; i < ro->n_cg_root; i++)
		if ((ret = add_owned(r, &o->cg_roots, "%s%s%s", ro->cg_root[i]->ctrl ?: "",
				     ro->cg_root[i]->ctrl ? ":" : "", ro->cg_root[i]->path)))
			return ret;
	return 0;
}

/*
 * The log of one request: log_file in the work directory (made there, not
 * through a symlink left in it), nothing on stderr.
 */
static int open_log(struct rpc *r, struct cryo_opts *o, const RpcOpts *ro)
{
	char path[PATH_MAX * 2], fdpath[32];
	const char *dir = o->work_dir ?: o->images_dir;
	_cleanup_close_ int dfd = -1, fd = -1;
	int ret;

	log_fini();
	log_error_reset();
	/* errors and warnings at their usual level, so that restoring children pass theirs up, but to nowhere */
	log_set_err_fd(r->devnull);
	if ((ret = log_init(LOG_WARN, NULL)) || !ro || !ro->log_file)
		return ret;
	snprintf(path, sizeof(path), "%s/%s", dir, ro->log_file);
	if ((dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return pr_perror("cannot open the log file's directory %s", dir);
	fd = door_open(dfd, ro->log_file, O_WRONLY | O_CREAT | O_TRUNC, 0600, DOOR_BENEATH | DOOR_NO_SYMLINKS,
		       "log_file in %s", dir);
	if (fd < 0)
		return fd;
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	if ((ret = log_init(LOG_WARN, fdpath)))
		pr_err("cannot open the log file %s", path);
	return ret;
}

static void set_error(RpcResp *resp, const char *fallback)
{
	int err;
	const char *msg = log_first_error(&err);

	resp->success = false;
	resp->cr_errmsg = (char *)(msg ?: fallback);
	resp->has_cr_errno = err != 0;
	resp->cr_errno = err;
}

static int serve_features(const RpcReq *req, RpcResp *resp, RpcFeatures *f)
{
	struct kerndat kd = { 0 };

	kerndat_probe(&kd);
	resp->features = f;
	if (req->features && req->features->has_mem_track) {
		f->has_mem_track = true;
		f->mem_track = check_criu_feature(&kd, "mem_track") == 1;
	}
	if (req->features && req->features->has_lazy_pages) {
		f->has_lazy_pages = true;
		f->lazy_pages = check_criu_feature(&kd, "lazy_pages") == 1;
	}
	if (req->features && req->features->has_pidfd_store) {
		f->has_pidfd_store = true;
		f->pidfd_store = false;
	}
	return 0;
}

static int serve_check(RpcResp *resp)
{
	struct kerndat kd = { 0 };
	int missing = 0;

	kerndat_probe(&kd);
	for (int f = 0; f < KD__MAX; f++)
		if (kd_info[f].required && !kd.f[f].ok) {
			pr_err("the kernel lacks %s, which cryo needs for %s%s%s", kd_info[f].name, kd_info[f].what,
			       kd.f[f].detail[0] ? ": " : "", kd.f[f].detail);
			missing++;
		}
	if (missing)
		set_error(resp, "the kernel lacks features cryo needs");
	return 0;
}

/* PAGE_SERVER: a page server for one (pre-)dump into the images directory, listening when answered */
static void serve_page_server(struct rpc *r, const RpcOpts *ro, struct cryo_opts *o, RpcResp *resp,
			      RpcPageServerInfo *psi)
{
	char port[16];
	pid_t pid;
	int bound;

	if (!ro->ps) {
		pr_err("PAGE_SERVER without ps: give the address and port to listen on (port 0: any)");
		set_error(resp, "no address");
		return;
	}
	snprintf(port, sizeof(port), "%d", ro->ps->has_port ? ro->ps->port : 0);
	o->address = ro->ps->address;
	o->port = port;
	if (page_server_spawn(o, r->sk, &pid, &bound)) {
		set_error(resp, "the page server did not start");
		return;
	}
	pr_info("page server pid %d on port %d for %s", pid, bound, o->images_dir);
	psi->has_pid = psi->has_port = true;
	psi->pid = pid;
	psi->port = bound;
	resp->ps = psi;
}

/* one request: its response, already sent when this returns 0 */
static int serve(struct rpc *r, const RpcReq *req)
{
	struct cryo_opts o = { .images_dir = ".", .verbosity = 0, .lazy_sock = -1, .hangup_fd = r->sk,
			       .detach = true, .notify_arg = r };
	RpcResp resp = RPC_RESP__INIT;
	RpcVersion ver = RPC_VERSION__INIT;
	RpcFeatures feat = RPC_FEATURES__INIT;
	RpcDumpResp dr = RPC_DUMP_RESP__INIT;
	RpcRestoreResp rr = RPC_RESTORE_RESP__INIT;
	RpcPageServerInfo psi = RPC_PAGE_SERVER_INFO__INIT;
	char gitid[64];
	int ret = 0;

	r->type = req->type;
	resp.type = req->type;
	resp.success = true;
	switch (req->type) {
	case RPC_TYPE__RPC_VERSION:
		log_error_reset();
		snprintf(gitid, sizeof(gitid), "cryo-%s", CRYO_VERSION);
		ver.major_number = CRIU_COMPAT_MAJOR;
		ver.minor_number = CRIU_COMPAT_MINOR;
		ver.gitid = gitid;
		ver.name = "cryo";
		resp.version = &ver;
		break;
	case RPC_TYPE__RPC_FEATURE_CHECK:
		log_error_reset();
		serve_features(req, &resp, &feat);
		break;
	case RPC_TYPE__RPC_CHECK:
		log_error_reset();
		serve_check(&resp);
		break;
	case RPC_TYPE__RPC_DUMP:
	case RPC_TYPE__RPC_PRE_DUMP:
	case RPC_TYPE__RPC_SINGLE_PRE_DUMP:
	case RPC_TYPE__RPC_RESTORE:
	case RPC_TYPE__RPC_PAGE_SERVER:
		log_error_reset();
		ret = take_opts(r, req->opts, &o);
		if (!ret && (ret = open_log(r, &o, req->opts)))
			ret = -EIO;
		if (!ret && req->opts->notify_scripts)
			o.notify_fn = rpc_notify;
		if (ret) {
			set_error(&resp, "bad options");
			break;
		}
		pr_info("%s request from pid %d: images %s", rpc_type__descriptor.values[req->type].name, r->client,
			o.images_dir);
		if (req->type == RPC_TYPE__RPC_PAGE_SERVER) {
			o.command = "page-server";
			o.page_server = NULL;
			serve_page_server(r, req->opts, &o, &resp, &psi);
		} else if (req->type == RPC_TYPE__RPC_DUMP) {
			o.command = "dump";
			if (cmd_dump(&o))
				set_error(&resp, "the dump failed");
			resp.dump = &dr;
		} else if (req->type == RPC_TYPE__RPC_RESTORE) {
			o.command = "restore";
			if (cmd_restore(&o)) {
				set_error(&resp, "the restore failed");
			} else {
				rr.pid = o.restored_pid;
				resp.restore = &rr;
			}
		} else {
			o.command = "pre-dump";
			if (cmd_pre_dump(&o))
				set_error(&resp, "the pre-dump failed");
		}
		break;
	default:
		log_error_reset();
		pr_err("request type %s is not supported by cryo", rpc_type__descriptor.values[req->type].name);
		set_error(&resp, "unsupported request");
		break;
	}
	if (!resp.success) {
		pr_info("%s failed: %s", rpc_type__descriptor.values[req->type].name, resp.cr_errmsg);
		/*
		 * Clients that show only cr_errno (runc: "criu failed: type
		 * RESTORE errno 2") still show what their stderr gets: cryo's
		 * stderr is theirs (/dev/null in a dump).
		 */
		dprintf(STDERR_FILENO, "cryo: %s\n", resp.cr_errmsg);
	}
	ret = send_msg(r, &resp, -1);
	drop_opts(r, &o);
	return ret;
}

int cmd_swrk(struct cryo_opts *o, int argc, char **argv)
{
	struct rpc r = { .sk = -1 };
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int type = 0, ret = 0;
	socklen_t tl = sizeof(type);
	char *end;

	if (argc != 1 || (r.sk = strtol(argv[0], &end, 10), *end) || r.sk < 0) {
		pr_err("usage: cryo swrk FD (FD: the client's end of a SOCK_SEQPACKET socketpair)");
		return 1;
	}
	if (getsockopt(r.sk, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_SEQPACKET) {
		pr_err("swrk: fd %d is not a SOCK_SEQPACKET socket", r.sk);
		return 1;
	}
	if (getsockopt(r.sk, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.pid <= 0) {
		pr_perror("swrk: cannot tell which process holds the other end of fd %d", r.sk);
		return 1;
	}
	r.client = cred.pid;
	r.devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (r.devnull < 0) {
		pr_perror("swrk: cannot open /dev/null");
		return 1;
	}
	/* errors go to the request's log and into its answer; serve() prints its one line to stderr */
	log_set_err_fd(r.devnull);
	r.scripts = o->action_scripts;
	fcntl(r.sk, F_SETFD, FD_CLOEXEC);
	for (;;) {
		RpcReq *req = recv_req(&r, &ret);

		if (!req)
			break;
		ret = serve(&r, req);
		rpc_req__free_unpacked(req, NULL);
		if (ret)
			break;
	}
	log_fini();
	close(r.devnull);
	return ret ? 1 : 0;
}
