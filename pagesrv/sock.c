/*
 * The sockets of page-server sessions: listening, connecting, and what
 * both ends set on theirs.
 */
#define LOG_PREFIX "pagesrv: "
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "log.h"
#include "pagesrv.h"
#include "util.h"

void ps_sock_liveness(int sock)
{
	int on = 1, idle = PS_KEEPALIVE_IDLE_S, intvl = 2, cnt = 3, user = PS_USER_TIMEOUT_S * 1000;

	/* a peer gone silent (a cable cut, a host down) is an error within seconds, not never */
	setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	setsockopt(sock, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(sock, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(sock, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(sock, IPPROTO_TCP, TCP_USER_TIMEOUT, &user, sizeof(user));
}

int ps_listen(const char *addr, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
	int fd, err, one = 1;

	err = getaddrinfo(addr, port, &hints, &res);
	if (err) {
		pr_err("page server: cannot use address %s port %s: %s", addr ? addr : "*", port,
		       gai_strerror(err));
		return -EINVAL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, PS_BACKLOG)) {
		err = -errno;
		pr_perror("page server: cannot listen on %s port %s", addr ? addr : "*", port);
		if (fd >= 0)
			close(fd);
		fd = err;
	}
	freeaddrinfo(res);
	return fd;
}

int ps_dial(const char *where)
{
	_cleanup_free_ char *host = xstrdup(where);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int err, one = 1, sock = -1;
	char *port;

	if (!host)
		return -ENOMEM;
	port = strrchr(host, ':');
	if (!port || port == host) {
		pr_err("page server '%s': expected HOST:PORT", where);
		return -EINVAL;
	}
	*port++ = 0;
	if (host[0] == '[' && port[-2] == ']') {	/* [v6]:port */
		port[-2] = 0;
		memmove(host, host + 1, strlen(host));
	}
	err = getaddrinfo(host, port, &hints, &res);
	if (err) {
		pr_err("page server %s: cannot resolve it: %s", where, gai_strerror(err));
		return -EINVAL;
	}
	for (ai = res; ai && sock < 0; ai = ai->ai_next) {
		sock = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (sock < 0)
			continue;
		if (connect(sock, ai->ai_addr, ai->ai_addrlen)) {
			err = errno;
			close(sock);
			sock = -1;
			errno = err;
		}
	}
	freeaddrinfo(res);
	if (sock < 0)
		return pr_perror("page server %s: cannot connect", where);
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ps_sock_liveness(sock);
	return sock;
}
