/*
 * cryo page-server|migrate-agent --address A --port P -D DIR --secret-file F [--once]
 *
 * The listening process: each connection is served by a child process of
 * its own (server.c's session_serve), up to PS_MAX_SESSIONS at once, so
 * that no client, authenticated or not, holds up another: an
 * unauthenticated one has PS_HANDSHAKE_S seconds in all, an authenticated
 * one ends after a silence of its own timeout. The children die with the
 * listener (an agent killed takes its sessions with it: the migration
 * fails and the source goes on). With --once the listener stops taking
 * connections after the first session that completes, and ends once the
 * others have ended.
 */
#define LOG_PREFIX "pagesrv: "
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "cryo.h"
#include "log.h"
#include "session.h"
#include "util.h"

#define PS_MAX_SESSIONS	32

struct listener {
	struct session *s;		/* what every session starts from: options, secret, directory */
	int lfd;
	bool once;
	bool done;			/* --once: a session completed */
	pid_t kids[PS_MAX_SESSIONS];
	size_t nr_kids;
	sigset_t wait_mask;		/* the signal mask while waiting: SIGCHLD let in */
	sigset_t old_mask;
};

/* migrations an agent left when it died: nobody will commit them */
static void remove_stale(int dirfd, const char *dir)
{
	DIR *d = fdopendir(dup(dirfd));
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char mark[PS_NAME_MAX + sizeof(MIGRATION_MARK) + 2];

		if (de->d_name[0] == '.' && strncmp(de->d_name, GONE_PREFIX, strlen(GONE_PREFIX)))
			continue;
		snprintf(mark, sizeof(mark), "%s/%s", de->d_name, MIGRATION_MARK);
		if (de->d_name[0] != '.' && faccessat(dirfd, mark, F_OK, AT_SYMLINK_NOFOLLOW))
			continue;
		pr_warn("%s/%s: a migration whose agent died; removing it", dir, de->d_name);
		if (rm_tree_at(dirfd, de->d_name))
			pr_warn("%s/%s: cannot remove all of it", dir, de->d_name);
	}
	closedir(d);
}

/* what a server needs before its first client: the secret, the images directory, the listening socket */
static int server_setup(struct session *s, struct cryo_opts *o, bool agent)
{
	int lfd;

	if (!o->port) {
		pr_err("%s: which port? Give it with --port P", o->command);
		return -EINVAL;
	}
	if (ps_read_secret(o->secret_file, s->secret, &s->slen))
		return -EACCES;
	s->dirfd = s->base_dirfd = open_images_dir(o->images_dir);
	if (s->dirfd < 0)
		return -ENOENT;
	if (agent)
		remove_stale(s->dirfd, o->images_dir);
	lfd = ps_listen(o->address, o->port);
	if (lfd < 0) {
		close(s->dirfd);
		explicit_bzero(s->secret, sizeof(s->secret));
	}
	return lfd;
}

static void on_sigchld(int sig)
{
	(void)sig;	/* only to end ppoll */
}

/* ended sessions reaped; --once: done once one completed */
static void reap(struct listener *l)
{
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (size_t i = 0; i < l->nr_kids; i++)
			if (l->kids[i] == pid) {
				l->kids[i] = l->kids[--l->nr_kids];
				break;
			}
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			l->done = l->done || l->once;
		else if (WIFSIGNALED(st))
			pr_warn("the session in pid %d was killed by signal %d", pid, WTERMSIG(st));
	}
}

/* the session's process: dies with the listener, serves one connection */
static void __attribute__((noreturn)) session_child(struct listener *l, pid_t parent, int sock, const char *peer)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	sigaction(SIGCHLD, &dfl, NULL);
	sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
		_exit(1);
	close(l->lfd);
	l->s->sock = sock;
	snprintf(l->s->peer, sizeof(l->s->peer), "%s", peer);
	_exit(session_serve(l->s) ? 1 : 0);
}

/* one connection taken, and a process of its own for it */
static void take_one(struct listener *l)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64] = "?", serv[16] = "?", peer[sizeof(l->s->peer)];
	pid_t pid, self = getpid();
	int sock = accept4(l->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

	if (sock < 0) {
		/* the listener goes on: a connection gone before it was taken, or too many fds for now */
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
			pr_perror("page server: accept");
			usleep(100000);	/* not a loop at full speed meanwhile */
		}
		return;
	}
	getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(peer, sizeof(peer), "%s port %s", host, serv);
	pid = fork();
	if (pid == 0)
		session_child(l, self, sock, peer);
	close(sock);
	if (pid < 0) {
		pr_perror("page server: cannot fork a process for the session of %s", peer);
		return;
	}
	pr_debug("peer %s: served by pid %d", peer, pid);
	l->kids[l->nr_kids++] = pid;
}

/* sessions until the listener fails (or, with --once, one completed): 0, or -errno (logged) */
static int server_loop(struct session *s, int lfd, bool once)
{
	struct listener l = { .s = s, .lfd = lfd, .once = once };
	struct sigaction sa = { .sa_handler = on_sigchld }, old_sa;
	sigset_t chld;
	int ret = 0;

	/* SIGCHLD ends the wait (ppoll), and only then: no child is missed */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &l.old_mask);
	l.wait_mask = l.old_mask;
	sigdelset(&l.wait_mask, SIGCHLD);
	sigaction(SIGCHLD, &sa, &old_sa);
	for (;;) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		bool room = l.nr_kids < PS_MAX_SESSIONS;
		int n;

		reap(&l);
		if (l.done)
			break;
		n = ppoll(&p, room ? 1 : 0, NULL, &l.wait_mask);
		if (n < 0 && errno != EINTR) {
			ret = pr_perror("page server: poll");
			break;
		}
		if (n > 0 && (p.revents & POLLIN))
			take_one(&l);
	}
	/* no more connections; the sessions still running end on their own */
	close(lfd);
	explicit_bzero(s->secret, sizeof(s->secret));
	while (l.nr_kids) {
		sigsuspend(&l.wait_mask);
		reap(&l);
	}
	sigaction(SIGCHLD, &old_sa, NULL);
	sigprocmask(SIG_SETMASK, &l.old_mask, NULL);
	close(s->dirfd);
	return ret;
}

static int run_server(struct cryo_opts *o, bool agent)
{
	struct session s = { .opts = o, .agent = agent, .fd = -1, .fdir = -1, .restore_listen = -1 };
	int lfd = server_setup(&s, o, agent);

	if (lfd < 0)
		return 1;
	printf("cryo %s: listening on %s port %s, writing to %s\n", o->command, o->address ? o->address : "*",
	       o->port, o->images_dir);
	fflush(stdout);
	return server_loop(&s, lfd, o->once) ? 1 : 0;
}

int page_server_spawn(struct cryo_opts *o, int close_in_child, pid_t *pid, int *port)
{
	struct session s = { .opts = o, .fd = -1, .fdir = -1, .restore_listen = -1 };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int lfd = server_setup(&s, o, false);

	if (lfd < 0)
		return lfd;
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl)) {
		*pid = pr_perror("page server: getsockname");
		goto out;
	}
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
						 ((struct sockaddr_in *)&ss)->sin_port);
	*pid = fork();
	if (*pid < 0) {
		*pid = pr_perror("page server: fork");
	} else if (*pid == 0) {
		close(close_in_child);
		o->once = true;
		_exit(server_loop(&s, lfd, true) ? 1 : 0);
	}
out:
	explicit_bzero(s.secret, sizeof(s.secret));
	close(s.dirfd);
	close(lfd);
	return *pid < 0 ? *pid : 0;
}

int cmd_page_server(struct cryo_opts *o)
{
	return run_server(o, false);
}

int cmd_migrate_agent(struct cryo_opts *o)
{
	return run_server(o, true);
}
