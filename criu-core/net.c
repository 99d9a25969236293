/*
 * The network namespace, through libnl-3 (rtnetlink): its devices
 * (loopback, and veth pairs whose other end is on the host, in a bridge),
 * their addresses, the routes of the main table that were added (not the
 * kernel's own), and the sysctls that matter.
 *
 * Dump: cryo reads it from inside the namespace, and the veth's other end
 * from its own. Restore: once the root exists in its new namespace, cryo
 * makes each veth pair with one end in there and the other put back in
 * its bridge, then sets up the inside as it was, before the root goes on.
 * Other kinds of device are refused at dump, naming them.
 *
 * The network lock: from before the dump reads any socket until the
 * restore is done, the host end of each veth is down, so that nothing
 * reaches the container (to be acknowledged and then lost, or answered
 * with a reset by a namespace whose sockets are not there yet) and the
 * peers only retransmit. A dump that lets the container run on unlocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include "door.h"
#include "dump.h"
#include "guard.h"
#include "fault.h"
#include "log.h"
#include "nft.h"
#include "ns.h"
#include "restore.h"
#include "util.h"
#include "validate.h"

/* per network namespace, under /proc/sys/net */
static const char *const net_sysctls[] = {
	"ipv4/ip_forward", "ipv6/conf/all/forwarding", "ipv4/ip_local_port_range", "ipv4/ping_group_range",
	NULL
};

/* the kinds of device cryo makes again */
static const char *const net_link_kinds[] = { "loopback", "veth", NULL };

struct rt {
	struct nl_sock *sk;
	struct nl_cache *links;
};

static int rt_open(struct rt *n, const char *where)
{
	int err;

	n->links = NULL;
	n->sk = nl_socket_alloc();
	if (!n->sk)
		return -ENOMEM;
	if ((err = nl_connect(n->sk, NETLINK_ROUTE)) ||
	    (err = rtnl_link_alloc_cache(n->sk, AF_UNSPEC, &n->links))) {
		pr_err("%s: rtnetlink: %s", where, nl_geterror(err));
		nl_socket_free(n->sk);
		n->sk = NULL;
		return -EIO;
	}
	return 0;
}

static void rt_close(struct rt *n)
{
	if (n->links)
		nl_cache_free(n->links);
	if (n->sk)
		nl_socket_free(n->sk);
	n->links = NULL;
	n->sk = NULL;
}

static char *ifname(struct arena *a, struct nl_cache *links, int ifindex)
{
	char buf[IFNAMSIZ];

	return arena_strdup(a, rtnl_link_i2name(links, ifindex, buf, sizeof(buf)) ? buf : "?");
}

static char *addr_str(struct arena *a, struct nl_addr *addr)
{
	char buf[128];

	if (!addr || !nl_addr_get_prefixlen(addr))
		return arena_strdup(a, "default");
	return arena_strdup(a, nl_addr2str(addr, buf, sizeof(buf)));
}

/* ---------------------------------------------------------------- dump */

struct net_dump {
	struct dump_ctx *ctx;
	struct rt nl;
	NetEntry *e;
	int ret;
	pid_t pid;
};

static void dump_link(struct nl_object *o, void *arg)
{
	struct net_dump *d = arg;
	struct rtnl_link *l = (struct rtnl_link *)o;
	struct arena *a = &d->ctx->arena;
	NetLinkEntry *le;
	struct nl_addr *mac = rtnl_link_get_addr(l);
	const char *type = rtnl_link_get_type(l);
	bool loopback = rtnl_link_get_flags(l) & IFF_LOOPBACK;

	if (d->ret)
		return;
	if (!loopback && !(type && !strcmp(type, "veth"))) {
		pr_err("pid %d: network device %s (%s) of its namespace: only loopback and veth are supported yet",
		       d->pid, rtnl_link_get_name(l), type ? type : "no kind");
		d->ret = -ENOTSUP;
		return;
	}
	le = arena_new(a, NetLinkEntry);
	d->e->links = arena_grow(a, d->e->links, d->e->n_links, sizeof(*d->e->links));
	if (!le || !d->e->links) {
		d->ret = -ENOMEM;
		return;
	}
	net_link_entry__init(le);
	le->name = arena_strdup(a, rtnl_link_get_name(l));
	le->kind = loopback ? "loopback" : "veth";
	le->flags = rtnl_link_get_flags(l);
	le->mtu = rtnl_link_get_mtu(l);
	if (mac && nl_addr_get_len(mac) && !loopback) {
		le->has_mac = true;
		le->mac.len = nl_addr_get_len(mac);
		le->mac.data = arena_alloc(a, le->mac.len);
		if (le->mac.data)
			memcpy(le->mac.data, nl_addr_get_binary_addr(mac), le->mac.len);
	}
	if (!loopback) {
		/* the peer's index, in the namespace of the host end: cryo's, looked up after */
		le->has_peer_ifindex = true;
		le->peer_ifindex = rtnl_link_get_link(l);
	}
	d->e->links[d->e->n_links++] = le;
}

static void dump_addr(struct nl_object *o, void *arg)
{
	struct net_dump *d = arg;
	struct rtnl_addr *ad = (struct rtnl_addr *)o;
	struct arena *a = &d->ctx->arena;
	struct nl_addr *local = rtnl_addr_get_local(ad);
	int family = rtnl_addr_get_family(ad);
	NetAddrEntry *e;

	if (d->ret || !local)
		return;
	/* the kernel's own: loopback's, and IPv6 link-local ones made from the MAC */
	if (rtnl_addr_get_scope(ad) == RT_SCOPE_HOST ||
	    (family == AF_INET6 && rtnl_addr_get_scope(ad) == RT_SCOPE_LINK))
		return;
	e = arena_new(a, NetAddrEntry);
	d->e->addrs = arena_grow(a, d->e->addrs, d->e->n_addrs, sizeof(*d->e->addrs));
	if (!e || !d->e->addrs) {
		d->ret = -ENOMEM;
		return;
	}
	net_addr_entry__init(e);
	e->ifname = ifname(a, d->nl.links, rtnl_addr_get_ifindex(ad));
	e->family = family;
	e->local = addr_str(a, local);
	e->has_flags = e->has_scope = true;
	e->flags = rtnl_addr_get_flags(ad) & (IFA_F_NODAD | IFA_F_NOPREFIXROUTE | IFA_F_HOMEADDRESS);
	e->scope = rtnl_addr_get_scope(ad);
	d->e->addrs[d->e->n_addrs++] = e;
}

static void dump_route(struct nl_object *o, void *arg)
{
	struct net_dump *d = arg;
	struct rtnl_route *r = (struct rtnl_route *)o;
	struct arena *a = &d->ctx->arena;
	struct rtnl_nexthop *nh;
	NetRouteEntry *e;

	if (d->ret || rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_protocol(r) == RTPROT_KERNEL ||
	    rtnl_route_get_type(r) != RTN_UNICAST)
		return;
	e = arena_new(a, NetRouteEntry);
	d->e->routes = arena_grow(a, d->e->routes, d->e->n_routes, sizeof(*d->e->routes));
	if (!e || !d->e->routes) {
		d->ret = -ENOMEM;
		return;
	}
	net_route_entry__init(e);
	e->family = rtnl_route_get_family(r);
	e->dst = addr_str(a, rtnl_route_get_dst(r));
	e->has_table = e->has_protocol = e->has_scope = e->has_priority = true;
	e->table = rtnl_route_get_table(r);
	e->protocol = rtnl_route_get_protocol(r);
	e->scope = rtnl_route_get_scope(r);
	e->priority = rtnl_route_get_priority(r);
	if (rtnl_route_get_nnexthops(r) > 1) {
		pr_err("pid %d: route to %s has several next hops: not supported yet", d->pid, e->dst);
		d->ret = -ENOTSUP;
		return;
	}
	nh = rtnl_route_nexthop_n(r, 0);
	if (nh) {
		if (rtnl_route_nh_get_gateway(nh))
			e->gateway = addr_str(a, rtnl_route_nh_get_gateway(nh));
		e->ifname = ifname(a, d->nl.links, rtnl_route_nh_get_ifindex(nh));
	}
	d->e->routes[d->e->n_routes++] = e;
}

static int dump_sysctls(struct dump_ctx *ctx, NetEntry *e)
{
	e->sysctls = arena_array(&ctx->arena, NetSysctlEntry *, ARRAY_SIZE(net_sysctls));
	if (!e->sysctls)
		return -ENOMEM;
	for (size_t i = 0; net_sysctls[i]; i++) {
		char path[128];
		_cleanup_free_ char *val = NULL;
		NetSysctlEntry *s;

		snprintf(path, sizeof(path), "/proc/sys/net/%s", net_sysctls[i]);
		if (read_file(path, &val, NULL))
			continue;
		val[strcspn(val, "\n")] = 0;
		s = arena_new(&ctx->arena, NetSysctlEntry);
		if (!s)
			return -ENOMEM;
		net_sysctl_entry__init(s);
		s->name = (char *)net_sysctls[i];
		s->value = arena_strdup(&ctx->arena, val);
		e->sysctls[e->n_sysctls++] = s;
	}
	return 0;
}

/* the host end of each veth: its name and bridge, from cryo's namespace */
static int dump_peers(struct net_dump *d)
{
	struct rt host;
	int ret = rt_open(&host, "cryo's network namespace");

	if (ret)
		return ret;
	for (size_t i = 0; i < d->e->n_links && !ret; i++) {
		NetLinkEntry *le = d->e->links[i];
		struct rtnl_link *p;

		if (!le->has_peer_ifindex)
			continue;
		p = rtnl_link_get(host.links, le->peer_ifindex);
		if (!p) {
			pr_err("pid %d: veth %s: its other end (index %u) is not in cryo's network namespace",
			       d->pid, le->name, le->peer_ifindex);
			ret = -ENOTSUP;
			break;
		}
		le->peer_name = arena_strdup(&d->ctx->arena, rtnl_link_get_name(p));
		le->has_peer_mtu = true;
		le->peer_mtu = rtnl_link_get_mtu(p);
		if (rtnl_link_get_master(p))
			le->peer_master = ifname(&d->ctx->arena, host.links, rtnl_link_get_master(p));
		rtnl_link_put(p);
	}
	rt_close(&host);
	return ret;
}

int net_dump(struct dump_ctx *ctx)
{
	struct net_dump d = { .ctx = ctx, .pid = ctx->tasks[0]->pid };
	struct nl_cache *addrs = NULL, *routes = NULL;
	NetEntry e = NET_ENTRY__INIT;
	struct img *img;
	int saved = -1, ret, err;

	/* --empty-ns net: the namespace's devices are the caller's to make again; --external: all of it is */
	if (!(ctx->ns_flags & CLONE_NEWNET) || (ctx->opts->empty_ns & CLONE_NEWNET) || ctx->net_ext_key)
		return 0;
	d.e = &e;
	if ((ret = ns_enter(d.pid, "net", &saved)))
		return ret;
	ret = rt_open(&d.nl, "the container's network namespace");
	if (!ret && ((err = rtnl_addr_alloc_cache(d.nl.sk, &addrs)) ||
		     (err = rtnl_route_alloc_cache(d.nl.sk, AF_UNSPEC, 0, &routes)))) {
		pr_err("pid %d: cannot read its addresses and routes: %s", d.pid, nl_geterror(err));
		ret = -EIO;
	}
	if (!ret) {
		nl_cache_foreach(d.nl.links, dump_link, &d);
		nl_cache_foreach(addrs, dump_addr, &d);
		nl_cache_foreach(routes, dump_route, &d);
		ret = d.ret ?: dump_sysctls(ctx, &e);
	}
	if (addrs)
		nl_cache_free(addrs);
	if (routes)
		nl_cache_free(routes);
	rt_close(&d.nl);
	ret = ns_leave("net", &saved) ?: ret;
	if (!ret)
		ret = dump_peers(&d);
	if (ret)
		return ret;
	img = img_create(ctx->dirfd, IMG_NET, 0);
	if (!img)
		return -EIO;
	ret = img_write(img, &e.base);
	return img_close(img) ?: ret;
}

/* bring the host ends named in names up or down */
static int set_host_ends(char **names, size_t n, bool up)
{
	struct rt host;
	int ret = rt_open(&host, "cryo's network namespace");

	for (size_t i = 0; !ret && i < n; i++) {
		struct rtnl_link *l = rtnl_link_get_by_name(host.links, names[i]), *chg = rtnl_link_alloc();
		int err;

		if (!l || !chg) {
			if (!l)
				pr_err("network lock: veth %s is gone", names[i]);
			ret = l ? -ENOMEM : -ENOENT;
		} else {
			if (up)
				rtnl_link_set_flags(chg, IFF_UP);
			else
				rtnl_link_unset_flags(chg, IFF_UP);
			if ((err = rtnl_link_change(host.sk, l, chg, 0))) {
				pr_err("network lock: cannot take veth %s %s: %s", names[i], up ? "up" : "down",
				       nl_geterror(err));
				ret = -EIO;
			}
		}
		if (l)
			rtnl_link_put(l);
		if (chg)
			rtnl_link_put(chg);
	}
	rt_close(&host);
	return ret;
}

/* --external net: the lock of the tree's network namespace, the caller's, on or off */
static int ext_lock(struct dump_ctx *ctx, bool on)
{
	char path[64];
	_cleanup_close_ int nsfd = -1;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", ctx->tasks[0]->pid);
	if ((nsfd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return pr_perror("cannot open %s", path);
	return netns_lock(nsfd, on, "the tree's external network namespace");
}

int net_link_set_up(const char *name)
{
	char *names[1] = { (char *)name };

	return set_host_ends(names, 1, true);
}

int net_lock(struct dump_ctx *ctx)
{
	struct rt in, host;
	int saved = -1, ret;
	size_t n = 0;
	int idx[64];

	if (ctx->net_ext_key) {
		if ((ret = ext_lock(ctx, true)))
			return ret;
		ctx->net_ext_locked = true;
		pr_info("network locked: the external network namespace drops every packet");
		return 0;
	}
	if (!(ctx->ns_flags & CLONE_NEWNET) || (ctx->opts->empty_ns & CLONE_NEWNET))
		return 0;
	if ((ret = ns_enter(ctx->tasks[0]->pid, "net", &saved)))
		return ret;
	ret = rt_open(&in, "the container's network namespace");
	if (!ret) {
		for (struct nl_object *o = nl_cache_get_first(in.links); o && n < 64; o = nl_cache_get_next(o)) {
			const char *type = rtnl_link_get_type((struct rtnl_link *)o);

			if (type && !strcmp(type, "veth"))
				idx[n++] = rtnl_link_get_link((struct rtnl_link *)o);
		}
		rt_close(&in);
	}
	ret = ns_leave("net", &saved) ?: ret;
	if (ret || !n)
		return ret;
	if ((ret = rt_open(&host, "cryo's network namespace")))
		return ret;
	ctx->net_locked = calloc(n, sizeof(char *));
	ctx->g_net_locked = calloc(n, sizeof(*ctx->g_net_locked));
	for (size_t i = 0; ctx->net_locked && ctx->g_net_locked && i < n; i++) {
		char name[IFNAMSIZ];

		if (!rtnl_link_i2name(host.links, idx[i], name, sizeof(name)) ||
		    !(ctx->net_locked[ctx->nr_net_locked] = strdup(name)))
			continue;
		/* should cryo die, its guardian sets it up again */
		ctx->g_net_locked[ctx->nr_net_locked++] = guard_link_down(ctx->opts->guard, name);
	}
	rt_close(&host);
	if (!ctx->net_locked || !ctx->g_net_locked)
		return -ENOMEM;
	ret = set_host_ends(ctx->net_locked, ctx->nr_net_locked, false);
	if (!ret)
		pr_info("network locked: %zu host veth ends down", ctx->nr_net_locked);
	fault_point("net-locked");
	return ret;
}

void net_unlock(struct dump_ctx *ctx, bool resume)
{
	if (resume && ctx->net_ext_locked && ext_lock(ctx, false))
		pr_warn("the external network namespace of pid %d stays locked (nftables table inet cryo-netlock)",
			ctx->tasks[0]->pid);
	ctx->net_ext_locked = false;
	if (resume && ctx->nr_net_locked && !set_host_ends(ctx->net_locked, ctx->nr_net_locked, true))
		pr_info("network unlocked");
	for (size_t i = 0; i < ctx->nr_net_locked; i++) {
		free(ctx->net_locked[i]);
		guard_done(ctx->g_net_locked[i]);
	}
	free(ctx->net_locked);
	free(ctx->g_net_locked);
	ctx->net_locked = NULL;
	ctx->g_net_locked = NULL;
	ctx->nr_net_locked = 0;
}

/* ------------------------------------------------------------- restore */

/*
 * --external veth[IF]:HOST[@BRIDGE] (LXC; RPC veths): the container's veth
 * IF gets its host end named HOST, in BRIDGE, or in none without one.
 */
static int rename_host_ends(struct restore_ctx *ctx)
{
	const struct str_list *l = &ctx->opts->externals;

	for (size_t i = 0; i < l->n; i++) {
		const char *e = l->v[i], *end = strstr(e, "]:"), *host, *at;
		NetLinkEntry *le = NULL;

		if (strncmp(e, "veth[", 5) || !end)
			continue;
		for (size_t k = 0; ctx->net && k < ctx->net->n_links && !le; k++)
			if (!strcmp(ctx->net->links[k]->kind, "veth") &&
			    !strncmp(ctx->net->links[k]->name, e + 5, end - e - 5) &&
			    !ctx->net->links[k]->name[end - e - 5])
				le = ctx->net->links[k];
		if (!le) {
			pr_err("--external %s: the container has no veth %.*s", e, (int)(end - e - 5), e + 5);
			return -ENOENT;
		}
		host = end + 2;
		at = strchr(host, '@');
		free(le->peer_name);
		free(le->peer_master);
		le->peer_name = at ? strndup(host, at - host) : strdup(host);
		le->peer_master = at ? strdup(at + 1) : NULL;
		if (!le->peer_name || (at && !le->peer_master))
			return -ENOMEM;
		if (door_ifname(le->peer_name, "--external %s: the host end", e) ||
		    (at && door_ifname(le->peer_master, "--external %s: the bridge", e)))
			return -EINVAL;
		pr_info("veth %s: its host end is %s%s%s", le->name, le->peer_name, at ? " in bridge " : "",
			at ? le->peer_master : "");
	}
	return 0;
}

int net_read(struct restore_ctx *ctx)
{
	int ret = 0;

	if (ctx->ns && (ctx->ns->flags & CLONE_NEWNET) && !(ctx->opts->empty_ns & CLONE_NEWNET) &&
	    !ctx->ns->net_external)
		ret = img_read_one(ctx->dirfd, IMG_NET, 0, (ProtobufCMessage **)&ctx->net);
	return ret ?: rename_host_ends(ctx);
}

/*
 * net.img: device names as the kernel takes them, kinds cryo makes,
 * addresses and routes as text for libnl, sysctls by the names cryo dumps.
 */
int net_validate_entry(const NetEntry *n, const char *where)
{
	int ret = 0;

	for (size_t i = 0; !ret && i < n->n_links; i++) {
		const NetLinkEntry *l = n->links[i];

		ret = door_ifname(l->name, "%s: links[%zu].name", where, i) ?:
		      door_oneof(l->kind, net_link_kinds, "%s: links[%zu].kind", where, i) ?:
		      (l->peer_name ? door_ifname(l->peer_name, "%s: links[%zu].peer_name", where, i) : 0) ?:
		      (l->peer_master ? door_ifname(l->peer_master, "%s: links[%zu].peer_master", where, i) : 0);
	}
	for (size_t i = 0; !ret && i < n->n_addrs; i++)
		ret = door_ifname(n->addrs[i]->ifname, "%s: addrs[%zu].ifname", where, i) ?:
		      door_text(n->addrs[i]->local, 64, "%s: addrs[%zu].local", where, i);
	for (size_t i = 0; !ret && i < n->n_routes; i++) {
		const NetRouteEntry *r = n->routes[i];

		ret = door_text(r->dst, 64, "%s: routes[%zu].dst", where, i) ?:
		      (r->gateway ? door_text(r->gateway, 64, "%s: routes[%zu].gateway", where, i) : 0) ?:
		      (r->ifname ? door_ifname(r->ifname, "%s: routes[%zu].ifname", where, i) : 0);
	}
	for (size_t i = 0; !ret && i < n->n_sysctls; i++)
		ret = door_oneof(n->sysctls[i]->name, net_sysctls, "%s: sysctls[%zu].name", where, i) ?:
		      door_text(n->sysctls[i]->value, 256, "%s: sysctls[%zu].value", where, i);
	return ret;
}

int net_validate(const struct restore_ctx *ctx)
{
	return ctx->net ? net_validate_entry(ctx->net, "net.img record 0") : 0;
}

/* each veth pair, its inside end put into pid's namespace, its host end in its bridge */
static int make_veths(struct restore_ctx *ctx, pid_t pid)
{
	struct rt host;
	int ret = rt_open(&host, "cryo's network namespace");

	for (size_t i = 0; !ret && i < ctx->net->n_links; i++) {
		const NetLinkEntry *le = ctx->net->links[i];
		struct rtnl_link *l, *peer, *chg;
		int err, master = 0;

		if (strcmp(le->kind, "veth"))
			continue;
		if (!le->peer_name) {
			pr_err("net.img: veth %s has no host end", le->name);
			ret = -EINVAL;
			break;
		}
		if (le->peer_master && !(master = rtnl_link_name2i(host.links, le->peer_master))) {
			pr_err("veth %s: the host bridge %s it was in is missing here", le->peer_name, le->peer_master);
			ret = -ENOENT;
			break;
		}
		l = rtnl_link_veth_alloc();
		if (!l) {
			ret = -ENOMEM;
			break;
		}
		peer = rtnl_link_veth_get_peer(l);
		rtnl_link_set_name(l, le->peer_name);
		rtnl_link_set_mtu(l, le->peer_mtu);
		rtnl_link_set_name(peer, le->name);
		rtnl_link_set_ns_pid(peer, pid);
		/* the dumped namespace's pair goes away a moment after its last task */
		for (int tries = 0; (err = rtnl_link_add(host.sk, l, NLM_F_CREATE | NLM_F_EXCL)) == -NLE_EXIST &&
				    tries < 100; tries++)
			usleep(50000);
		rtnl_link_put(peer);
		rtnl_link_veth_release(l);
		if (err) {
			pr_err("cannot make veth %s (host) / %s (container): %s", le->peer_name, le->name,
			       nl_geterror(err));
			ret = -EIO;
			break;
		}
		/* the new host end: into its bridge, down until the restore is done */
		nl_cache_refill(host.sk, host.links);
		l = rtnl_link_get_by_name(host.links, le->peer_name);
		chg = rtnl_link_alloc();
		if (!l || !chg) {
			ret = l ? -ENOMEM : -ENOENT;
		} else {
			if (master)
				rtnl_link_set_master(chg, master);
			if ((err = rtnl_link_change(host.sk, l, chg, 0))) {
				pr_err("veth %s: cannot put it in bridge %s: %s", le->peer_name,
				       le->peer_master ? le->peer_master : "-", nl_geterror(err));
				ret = -EIO;
			}
		}
		if (l)
			rtnl_link_put(l);
		if (chg)
			rtnl_link_put(chg);
	}
	rt_close(&host);
	return ret;
}

static int setup_links(const NetEntry *n, struct rt *in)
{
	for (size_t i = 0; i < n->n_links; i++) {
		const NetLinkEntry *le = n->links[i];
		struct rtnl_link *l = rtnl_link_get_by_name(in->links, le->name), *chg = rtnl_link_alloc();
		struct nl_addr *mac = NULL;
		int err = 0;

		if (!l || !chg) {
			pr_err("network device %s is missing in the container", le->name);
			if (l)
				rtnl_link_put(l);
			if (chg)
				rtnl_link_put(chg);
			return -ENOENT;
		}
		rtnl_link_set_mtu(chg, le->mtu);
		if (le->has_mac && (mac = nl_addr_build(AF_LLC, le->mac.data, le->mac.len)))
			rtnl_link_set_addr(chg, mac);
		if (le->flags & IFF_UP)
			rtnl_link_set_flags(chg, IFF_UP);
		err = rtnl_link_change(in->sk, l, chg, 0);
		if (mac)
			nl_addr_put(mac);
		rtnl_link_put(l);
		rtnl_link_put(chg);
		if (err) {
			pr_err("network device %s: cannot set its MTU, address and state: %s", le->name,
			       nl_geterror(err));
			return -EIO;
		}
	}
	return 0;
}

static int setup_addrs(const NetEntry *n, struct rt *in)
{
	for (size_t i = 0; i < n->n_addrs; i++) {
		const NetAddrEntry *e = n->addrs[i];
		struct rtnl_addr *ad = rtnl_addr_alloc();
		struct nl_addr *local = NULL;
		int err;

		if (!ad)
			return -ENOMEM;
		err = nl_addr_parse(e->local, e->family, &local);
		if (!err) {
			rtnl_addr_set_ifindex(ad, rtnl_link_name2i(in->links, e->ifname));
			rtnl_addr_set_family(ad, e->family);
			err = rtnl_addr_set_local(ad, local);
		}
		if (!err) {
			rtnl_addr_set_flags(ad, e->flags);
			rtnl_addr_set_scope(ad, e->scope);
			err = rtnl_addr_add(in->sk, ad, 0);
		}
		if (local)
			nl_addr_put(local);
		rtnl_addr_put(ad);
		if (err) {
			pr_err("cannot give %s address %s: %s", e->ifname, e->local, nl_geterror(err));
			return -EIO;
		}
	}
	return 0;
}

static int setup_routes(const NetEntry *n, struct rt *in)
{
	for (size_t i = 0; i < n->n_routes; i++) {
		const NetRouteEntry *e = n->routes[i];
		struct rtnl_route *r = rtnl_route_alloc();
		struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
		struct nl_addr *dst = NULL, *gw = NULL;
		int err;

		if (!r || !nh) {
			if (r)
				rtnl_route_put(r);
			if (nh)
				rtnl_route_nh_free(nh);
			return -ENOMEM;
		}
		err = nl_addr_parse(e->dst, e->family, &dst);
		if (!err && e->gateway)
			err = nl_addr_parse(e->gateway, e->family, &gw);
		if (!err) {
			rtnl_route_set_family(r, e->family);
			rtnl_route_set_table(r, e->table);
			rtnl_route_set_protocol(r, e->protocol);
			rtnl_route_set_scope(r, e->scope);
			rtnl_route_set_priority(r, e->priority);
			rtnl_route_set_type(r, RTN_UNICAST);
			err = rtnl_route_set_dst(r, dst);
		}
		if (!err) {
			if (gw)
				rtnl_route_nh_set_gateway(nh, gw);
			if (e->ifname)
				rtnl_route_nh_set_ifindex(nh, rtnl_link_name2i(in->links, e->ifname));
			rtnl_route_add_nexthop(r, nh);
			nh = NULL;
			err = rtnl_route_add(in->sk, r, NLM_F_CREATE);
		}
		if (nh)
			rtnl_route_nh_free(nh);
		if (dst)
			nl_addr_put(dst);
		if (gw)
			nl_addr_put(gw);
		rtnl_route_put(r);
		if (err) {
			pr_err("cannot add the route to %s via %s: %s", e->dst, e->gateway ? e->gateway : "-",
			       nl_geterror(err));
			return -EIO;
		}
	}
	return 0;
}

/* in the container's network namespace: each beneath its /proc/sys/net, by a name cryo dumps */
static int setup_sysctls(const NetEntry *n)
{
	_cleanup_close_ int dir = -1;

	if (!n->n_sysctls)
		return 0;
	dir = open("/proc/sys/net", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return pr_perror("cannot open /proc/sys/net in the container's network namespace");
	for (size_t i = 0; i < n->n_sysctls; i++) {
		const NetSysctlEntry *s = n->sysctls[i];
		int fd, ret = 0;

		if (door_oneof(s->name, net_sysctls, "net.img: sysctl"))
			return -EINVAL;
		fd = door_open(dir, s->name, O_WRONLY, 0, DOOR_BENEATH | DOOR_NO_SYMLINKS, "net.img: sysctl");
		if (fd < 0)
			return fd;
		if (write_all(fd, s->value, strlen(s->value)))
			ret = pr_perror("cannot set net.%s to %s in the container", s->name, s->value);
		close(fd);
		if (ret)
			return ret;
	}
	return 0;
}

int net_restore_unlock(struct restore_ctx *ctx)
{
	char *names[64];
	size_t n = 0;

	if (ctx->net_ext_fd >= 0)
		return netns_lock(ctx->net_ext_fd, false, "the external network namespace");
	for (size_t i = 0; ctx->net && i < ctx->net->n_links && n < 64; i++)
		if (!strcmp(ctx->net->links[i]->kind, "veth") && ctx->net->links[i]->peer_name)
			names[n++] = ctx->net->links[i]->peer_name;
	return n ? set_host_ends(names, n, true) : 0;
}

/*
 * --empty-ns net: the caller fills the namespace (runc's hooks, at
 * setup-namespaces); cryo only sets its loopback up, as it was in use.
 */
static int net_restore_empty(pid_t pid)
{
	NetLinkEntry lo = NET_LINK_ENTRY__INIT, *lop = &lo;
	NetEntry n = NET_ENTRY__INIT;
	struct rt in = { 0 };
	int saved = -1, ret;

	lo.name = "lo";
	lo.kind = "loopback";
	lo.flags = IFF_UP;
	lo.mtu = 65536;
	n.n_links = 1;
	n.links = &lop;
	if ((ret = ns_enter(pid, "net", &saved)))
		return ret;
	ret = rt_open(&in, "the container's network namespace") ?: setup_links(&n, &in);
	rt_close(&in);
	return ns_leave("net", &saved) ?: ret;
}

int net_restore(struct restore_ctx *ctx, pid_t pid)
{
	struct rt in = { 0 };
	int saved = -1, ret;

	if (!ctx->net)
		return ctx->ns && (ctx->ns->flags & CLONE_NEWNET) && (ctx->opts->empty_ns & CLONE_NEWNET) &&
		       ctx->net_ext_fd < 0 ?
		       net_restore_empty(pid) : 0;
	if ((ret = make_veths(ctx, pid)) || (ret = ns_enter(pid, "net", &saved)))
		return ret;
	ret = rt_open(&in, "the container's network namespace");
	if (!ret)
		ret = setup_links(ctx->net, &in) ?: setup_addrs(ctx->net, &in) ?: setup_routes(ctx->net, &in) ?:
		      setup_sysctls(ctx->net);
	rt_close(&in);
	return ns_leave("net", &saved) ?: ret;
}
