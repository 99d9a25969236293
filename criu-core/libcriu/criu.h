/*
 * cryo's libcriu: the C library interface of CRIU's libcriu (libcriu.so.2,
 * <criu/criu.h>), for programs that checkpoint through it (crun).
 *
 * Each operation runs "<service binary> swrk FD" (cryo, looked up in PATH,
 * unless criu_set_service_binary names another) and speaks CRIU's RPC to
 * it (images/rpc.proto). The options are built up with the setters below,
 * either in the library's one global set (criu_init_opts, then criu_set_*)
 * or in sets of the caller's (criu_local_init_opts, then criu_local_set_*).
 *
 * Setters that take a string or add to a list return 0 or -errno; the
 * operations return 0 (criu_restore*: the restored root's pid) or -errno,
 * the errno cryo reported or -EBADE when it gave none, -ECOMM when it could
 * not be reached or did not answer.
 */
#ifndef CRIU_LIB_H
#define CRIU_LIB_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* log levels for criu_set_log_level */
#define CRIU_LOG_UNSET	(-1)
#define CRIU_LOG_MSG	0
#define CRIU_LOG_ERROR	1
#define CRIU_LOG_WARN	2
#define CRIU_LOG_INFO	3
#define CRIU_LOG_DEBUG	4

/* how the library reaches the checkpoint tool */
enum criu_service_comm {
	CRIU_COMM_SK,	/* connect to a service socket (criu_set_service_address) */
	CRIU_COMM_FD,	/* an already connected socket (criu_set_service_fd) */
	CRIU_COMM_BIN,	/* run "BINARY swrk FD" (the default; criu_set_service_binary) */
};

enum criu_cg_mode {
	CRIU_CG_MODE_IGNORE	= 0,
	CRIU_CG_MODE_NONE	= 1,
	CRIU_CG_MODE_PROPS	= 2,
	CRIU_CG_MODE_SOFT	= 3,
	CRIU_CG_MODE_FULL	= 4,
	CRIU_CG_MODE_STRICT	= 5,
	CRIU_CG_MODE_DEFAULT	= 6,
};

enum criu_network_lock_method {
	CRIU_NETWORK_LOCK_IPTABLES	= 1,
	CRIU_NETWORK_LOCK_NFTABLES	= 2,
	CRIU_NETWORK_LOCK_SKIP		= 3,
};

enum criu_pre_dump_mode {
	CRIU_PRE_DUMP_SPLICE	= 1,
	CRIU_PRE_DUMP_READ	= 2,
};

/* a set of options; opaque */
typedef struct criu_opts criu_opts;

/* what a notify callback gets with the hook's name (opaque: criu_notify_pid reads it) */
typedef struct criu_notify_arg *criu_notify_arg_t;

/* given to criu_dump_iters' callback; nothing in it yet */
typedef void *criu_predump_info;

/* criu_feature_check: set the fields to ask about; each comes back true if supported */
struct criu_feature_check {
	bool mem_track;
	bool lazy_pages;
	bool pidfd_store;
};

/* ---- the global option set ---- */

int criu_init_opts(void);
void criu_free_opts(void);

int criu_set_service_address(const char *path);
void criu_set_service_fd(int fd);
int criu_set_service_binary(const char *path);
int criu_set_service_comm(enum criu_service_comm comm);

void criu_set_pid(int pid);
void criu_set_images_dir_fd(int fd);	/* must be set for dump and restore */
int criu_set_parent_images(const char *path);
void criu_set_work_dir_fd(int fd);
void criu_set_leave_running(bool leave_running);
void criu_set_ext_unix_sk(bool ext_unix_sk);
int criu_add_unix_sk(unsigned int inode);
void criu_set_tcp_established(bool tcp_established);
void criu_set_tcp_skip_in_flight(bool tcp_skip_in_flight);
void criu_set_tcp_close(bool tcp_close);
void criu_set_weak_sysctls(bool val);
void criu_set_evasive_devices(bool evasive_devices);
void criu_set_shell_job(bool shell_job);
void criu_set_orphan_pts_master(bool orphan_pts_master);
void criu_set_file_locks(bool file_locks);
void criu_set_track_mem(bool track_mem);
void criu_set_auto_dedup(bool auto_dedup);
void criu_set_force_irmap(bool force_irmap);
void criu_set_link_remap(bool link_remap);
void criu_set_lazy_pages(bool lazy_pages);
void criu_set_log_level(int log_level);
int criu_set_log_file(const char *log_file);
void criu_set_cpu_cap(unsigned int cap);
int criu_set_root(const char *root);
void criu_set_manage_cgroups(bool manage);
void criu_set_manage_cgroups_mode(enum criu_cg_mode mode);
int criu_set_freeze_cgroup(const char *name);
int criu_set_lsm_profile(const char *name);
int criu_set_lsm_mount_context(const char *name);
void criu_set_timeout(unsigned int timeout);
void criu_set_auto_ext_mnt(bool val);
void criu_set_ext_sharing(bool val);
void criu_set_ext_masters(bool val);
int criu_set_exec_cmd(int argc, char *argv[]);
int criu_add_ext_mount(const char *key, const char *val);
int criu_add_veth_pair(const char *in, const char *out);
int criu_add_cg_root(const char *ctrl, const char *path);
int criu_add_enable_fs(const char *fs);
int criu_add_skip_mnt(const char *mnt);
void criu_set_ghost_limit(unsigned int limit);
int criu_add_irmap_path(const char *path);
int criu_add_inherit_fd(int fd, const char *key);
int criu_add_external(const char *key);
int criu_set_page_server_address_port(const char *address, int port);
int criu_set_pre_dump_mode(enum criu_pre_dump_mode mode);
void criu_set_pidfd_store_sk(int sk);
int criu_set_network_lock(enum criu_network_lock_method method);
int criu_join_ns_add(const char *ns, const char *ns_file, const char *extra_opt);
void criu_set_mntns_compat_mode(bool val);

/* called at each hook point with its name ("post-dump", "orphan-pts-master", ...); non-zero refuses */
void criu_set_notify_cb(int (*cb)(char *action, criu_notify_arg_t na));
/* the pid a notification names (post-restore: the restored root), or 0 */
int criu_notify_pid(criu_notify_arg_t na);
/* the pty master fd the last restore handed over at "orphan-pts-master", or -1 */
int criu_get_orphan_pts_master_fd(void);

int criu_check(void);
int criu_dump(void);
int criu_pre_dump(void);
int criu_restore(void);
int criu_restore_child(void);	/* the restored root becomes the caller's child */
/* pre-dumps while more() returns > 0, then the dump; more() < 0 stops with that error */
int criu_dump_iters(int (*more)(criu_predump_info pi));
/* the tool's version as major * 10000 + minor * 100 + sublevel, or -errno */
int criu_get_version(void);
/* 1 if the tool's version is at least minimum, 0 if older, -errno on error */
int criu_check_version(int minimum);
/* size: sizeof(*features) as the caller knows it */
int criu_feature_check(struct criu_feature_check *features, size_t size);

/* ---- the same for an option set of the caller's ---- */

int criu_local_init_opts(criu_opts **opts);
void criu_local_free_opts(criu_opts *opts);

int criu_local_set_service_address(criu_opts *opts, const char *path);
void criu_local_set_service_fd(criu_opts *opts, int fd);
int criu_local_set_service_binary(criu_opts *opts, const char *path);
int criu_local_set_service_comm(criu_opts *opts, enum criu_service_comm comm);

void criu_local_set_pid(criu_opts *opts, int pid);
void criu_local_set_images_dir_fd(criu_opts *opts, int fd);
int criu_local_set_parent_images(criu_opts *opts, const char *path);
void criu_local_set_work_dir_fd(criu_opts *opts, int fd);
void criu_local_set_leave_running(criu_opts *opts, bool leave_running);
void criu_local_set_ext_unix_sk(criu_opts *opts, bool ext_unix_sk);
int criu_local_add_unix_sk(criu_opts *opts, unsigned int inode);
void criu_local_set_tcp_established(criu_opts *opts, bool tcp_established);
void criu_local_set_tcp_skip_in_flight(criu_opts *opts, bool tcp_skip_in_flight);
void criu_local_set_tcp_close(criu_opts *opts, bool tcp_close);
void criu_local_set_weak_sysctls(criu_opts *opts, bool val);
void criu_local_set_evasive_devices(criu_opts *opts, bool evasive_devices);
void criu_local_set_shell_job(criu_opts *opts, bool shell_job);
void criu_local_set_orphan_pts_master(criu_opts *opts, bool orphan_pts_master);
void criu_local_set_file_locks(criu_opts *opts, bool file_locks);
void criu_local_set_track_mem(criu_opts *opts, bool track_mem);
void criu_local_set_auto_dedup(criu_opts *opts, bool auto_dedup);
void criu_local_set_force_irmap(criu_opts *opts, bool force_irmap);
void criu_local_set_link_remap(criu_opts *opts, bool link_remap);
void criu_local_set_lazy_pages(criu_opts *opts, bool lazy_pages);
void criu_local_set_log_level(criu_opts *opts, int log_level);
int criu_local_set_log_file(criu_opts *opts, const char *log_file);
void criu_local_set_cpu_cap(criu_opts *opts, unsigned int cap);
int criu_local_set_root(criu_opts *opts, const char *root);
void criu_local_set_manage_cgroups(criu_opts *opts, bool manage);
void criu_local_set_manage_cgroups_mode(criu_opts *opts, enum criu_cg_mode mode);
int criu_local_set_freeze_cgroup(criu_opts *opts, const char *name);
int criu_local_set_lsm_profile(criu_opts *opts, const char *name);
int criu_local_set_lsm_mount_context(criu_opts *opts, const char *name);
void criu_local_set_timeout(criu_opts *opts, unsigned int timeout);
void criu_local_set_auto_ext_mnt(criu_opts *opts, bool val);
void criu_local_set_ext_sharing(criu_opts *opts, bool val);
void criu_local_set_ext_masters(criu_opts *opts, bool val);
int criu_local_set_exec_cmd(criu_opts *opts, int argc, char *argv[]);
int criu_local_add_ext_mount(criu_opts *opts, const char *key, const char *val);
int criu_local_add_veth_pair(criu_opts *opts, const char *in, const char *out);
int criu_local_add_cg_root(criu_opts *opts, const char *ctrl, const char *path);
int criu_local_add_enable_fs(criu_opts *opts, const char *fs);
int criu_local_add_skip_mnt(criu_opts *opts, const char *mnt);
void criu_local_set_ghost_limit(criu_opts *opts, unsigned int limit);
int criu_local_add_irmap_path(criu_opts *opts, const char *path);
int criu_local_add_cg_props(criu_opts *opts, const char *stream);
int criu_local_add_cg_props_file(criu_opts *opts, const char *path);
int criu_local_add_cg_dump_controller(criu_opts *opts, const char *name);
int criu_local_add_cg_yard(criu_opts *opts, const char *path);
int criu_local_add_inherit_fd(criu_opts *opts, int fd, const char *key);
int criu_local_add_external(criu_opts *opts, const char *key);
int criu_local_set_page_server_address_port(criu_opts *opts, const char *address, int port);
int criu_local_set_pre_dump_mode(criu_opts *opts, enum criu_pre_dump_mode mode);
void criu_local_set_pidfd_store_sk(criu_opts *opts, int sk);
int criu_local_set_network_lock(criu_opts *opts, enum criu_network_lock_method method);
int criu_local_join_ns_add(criu_opts *opts, const char *ns, const char *ns_file, const char *extra_opt);
void criu_local_set_mntns_compat_mode(criu_opts *opts, bool val);

void criu_local_set_notify_cb(criu_opts *opts, int (*cb)(char *action, criu_notify_arg_t na));
int criu_local_get_orphan_pts_master_fd(criu_opts *opts);

int criu_local_check(criu_opts *opts);
int criu_local_dump(criu_opts *opts);
int criu_local_pre_dump(criu_opts *opts);
int criu_local_restore(criu_opts *opts);
int criu_local_restore_child(criu_opts *opts);
int criu_local_dump_iters(criu_opts *opts, int (*more)(criu_predump_info pi));
int criu_local_get_version(criu_opts *opts);
int criu_local_check_version(criu_opts *opts, int minimum);
int criu_local_feature_check(criu_opts *opts, struct criu_feature_check *features, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* CRIU_LIB_H */
