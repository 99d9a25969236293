/*
 * What both ends of a page-server session set on their socket.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "pagesrv.h"

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
