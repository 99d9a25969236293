/*
 * The sample OS container's UDP service: answers each datagram on port
 * 7001 with "echo " and the datagram, to whoever sent it.
 *
 * Built static: it runs inside the busybox root file system.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(void)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(7001), .sin6_addr = IN6ADDR_ANY_INIT };
	int s = socket(AF_INET6, SOCK_DGRAM, 0);
	char buf[2048];

	if (s < 0 || bind(s, (void *)&a, sizeof(a))) {
		perror("ct-udpecho");
		return 1;
	}
	memcpy(buf, "echo ", 5);
	for (;;) {
		struct sockaddr_in6 from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, buf + 5, sizeof(buf) - 5, 0, (void *)&from, &fl);

		if (n >= 0)
			sendto(s, buf, n + 5, 0, (void *)&from, fl);
	}
}
