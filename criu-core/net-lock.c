/*
 * The network lock of an external network namespace: the runtime made it
 * and keeps it (its devices, its addresses), and cryo must not touch
 * them. From before the dump reads any socket until the restored tree
 * runs, a table of cryo's there (inet cryo-netlock) drops every packet in
 * its input and output hooks: nothing reaches the namespace while its
 * sockets are gone (a reset) or in repair (bytes acknowledged and lost),
 * and the peers retransmit until the restore opens it again. Unlike the
 * table udp-cork.c makes, no socket owns it: it must outlive the dump.
 */
#define LOG_PREFIX "net-lock: "
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/table.h>

#include "log.h"
#include "nft.h"
#include "util.h"

#define LOCK_TABLE	"cryo-netlock"
#define LOCK_PRIO	(-500)		/* before raw (-300) and conntrack (-200) */

struct mnl_socket *nft_socket_in(int nsfd, const char *what)
{
	_cleanup_close_ int mine = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	struct mnl_socket *nl;

	if (mine < 0 || setns(nsfd, CLONE_NEWNET)) {
		pr_perror("%s: cannot enter its network namespace", what);
		return NULL;
	}
	nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (setns(mine, CLONE_NEWNET)) {
		pr_perror("cannot go back to cryo's network namespace");
		if (nl)
			mnl_socket_close(nl);
		return NULL;
	}
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID)) {
		pr_perror("%s: cannot open a netfilter netlink socket", what);
		if (nl)
			mnl_socket_close(nl);
		return NULL;
	}
	return nl;
}

int nft_acks(struct mnl_socket *nl, int n)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	unsigned int port = mnl_socket_get_portid(nl);

	while (n-- > 0) {
		ssize_t len = mnl_socket_recvfrom(nl, buf, sizeof(buf));

		if (len < 0 || mnl_cb_run(buf, len, 0, port, NULL, NULL) < 0)
			return -errno;
	}
	return 0;
}

/* a base chain of the lock table that drops everything at hook */
static struct nftnl_chain *drop_chain(const char *name, unsigned hook)
{
	struct nftnl_chain *ch = nftnl_chain_alloc();

	if (!ch)
		return NULL;
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, LOCK_TABLE);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, "filter");
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, hook);
	nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, LOCK_PRIO);
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_POLICY, NF_DROP);
	return ch;
}

int netns_lock(int nsfd, bool on, const char *what)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, sizeof(buf));
	struct nftnl_table *t = nftnl_table_alloc();
	struct nftnl_chain *ch[2] = { drop_chain("in", NF_INET_LOCAL_IN), drop_chain("out", NF_INET_LOCAL_OUT) };
	struct mnl_socket *nl = NULL;
	uint32_t seq = time(NULL);
	struct nlmsghdr *h;
	int ret = -ENOMEM, n = 0;

	if (!b || !t || !ch[0] || !ch[1])
		goto out;
	if (!(nl = nft_socket_in(nsfd, what))) {
		ret = -EIO;
		goto out;
	}
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, LOCK_TABLE);
	nftnl_batch_begin(mnl_nlmsg_batch_current(b), seq++);
	mnl_nlmsg_batch_next(b);
	/* on: made anew, or left by a dump whose restore has not come yet */
	h = nftnl_table_nlmsg_build_hdr(mnl_nlmsg_batch_current(b), on ? NFT_MSG_NEWTABLE : NFT_MSG_DELTABLE,
					NFPROTO_INET, (on ? NLM_F_CREATE : 0) | NLM_F_ACK, seq++);
	nftnl_table_nlmsg_build_payload(h, t);
	mnl_nlmsg_batch_next(b);
	n++;
	for (size_t i = 0; on && i < ARRAY_SIZE(ch); i++, n++) {
		h = nftnl_chain_nlmsg_build_hdr(mnl_nlmsg_batch_current(b), NFT_MSG_NEWCHAIN, NFPROTO_INET,
						NLM_F_CREATE | NLM_F_ACK, seq++);
		nftnl_chain_nlmsg_build_payload(h, ch[i]);
		mnl_nlmsg_batch_next(b);
	}
	nftnl_batch_end(mnl_nlmsg_batch_current(b), seq++);
	mnl_nlmsg_batch_next(b);
	if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b)) < 0) {
		ret = pr_perror("%s: cannot send nftables the network lock", what);
	} else if ((ret = nft_acks(nl, n))) {
		errno = -ret;
		if (on || errno != ENOENT)
			pr_perror("%s: nftables refuses to %s the network lock (table inet %s)", what,
				  on ? "make" : "remove", LOCK_TABLE);
		else
			ret = 0;	/* already open */
	}
out:
	if (nl)
		mnl_socket_close(nl);
	if (b)
		mnl_nlmsg_batch_stop(b);
	if (t)
		nftnl_table_free(t);
	for (size_t i = 0; i < ARRAY_SIZE(ch); i++)
		if (ch[i])
			nftnl_chain_free(ch[i]);
	return ret;
}
