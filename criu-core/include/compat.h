/*
 * Kernel interfaces newer than this system's headers (Debian 12 ships
 * linux-libc-dev 6.1; cryo targets the running 6.x kernel). Everything that
 * the headers may lack is defined here, once, guarded by #ifndef.
 */
#ifndef CRYO_COMPAT_H
#define CRYO_COMPAT_H

#include <stdint.h>
#include <sys/ioctl.h>

/* --- PAGEMAP_SCAN (6.7): Documentation/admin-guide/mm/pagemap.rst --- */
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

struct pm_scan_arg {
	uint64_t size;
	uint64_t flags;
	uint64_t start;
	uint64_t end;
	uint64_t walk_end;
	uint64_t vec;
	uint64_t vec_len;
	uint64_t max_pages;
	uint64_t category_inverted;
	uint64_t category_mask;
	uint64_t category_anyof_mask;
	uint64_t return_mask;
};

#define PAGEMAP_SCAN		_IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING	(1 << 0)
#define PM_SCAN_CHECK_WPASYNC	(1 << 1)
#define PAGE_IS_WPALLOWED	(1 << 0)
#define PAGE_IS_WRITTEN		(1 << 1)
#define PAGE_IS_FILE		(1 << 2)
#define PAGE_IS_PRESENT		(1 << 3)
#define PAGE_IS_SWAPPED		(1 << 4)
#define PAGE_IS_PFNZERO		(1 << 5)
#define PAGE_IS_HUGE		(1 << 6)
#define PAGE_IS_SOFT_DIRTY	(1 << 7)
#endif

/* --- userfaultfd features newer than 6.1 --- */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED	(1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON		(1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC		(1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY		1
#endif

/* --- ptrace: struct from linux/ptrace.h, which clashes with sys/ptrace.h --- */
struct cryo_rseq_config {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

struct cryo_seccomp_metadata {
	uint64_t filter_off;
	uint64_t flags;
};

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP	128
#endif

/* --- rseq (linux/rseq.h) --- */
#ifndef RSEQ_FLAG_UNREGISTER
#define RSEQ_FLAG_UNREGISTER	(1 << 0)
#endif
#define RSEQ_SIG_X86		0x53053053

/* --- prctl --- */
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE	67
#define PR_GET_MEMORY_MERGE	68
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA		0x53564d41
#define PR_SET_VMA_ANON_NAME	0
#endif

/* --- madvise --- */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif

/* --- mremap --- */
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP	4
#endif

/* --- kcmp (linux/kcmp.h) --- */
#ifndef KCMP_FILE
#define KCMP_FILE		0
#define KCMP_VM			1
#define KCMP_FILES		2
#define KCMP_FS			3
#define KCMP_SIGHAND		4
#define KCMP_IO			5
#define KCMP_SYSVSEM		6
#endif

/* x86_64 user address space limits (4- and 5-level paging) */
#define TASK_SIZE_47		0x00007ffffffff000UL
#define TASK_SIZE_56		0x00fffffffffff000UL

#ifndef KCMP_EPOLL_TFD
#define KCMP_EPOLL_TFD		7
#endif
struct kcmp_epoll_slot {
	uint32_t efd, tfd, toff;
};

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS	_IOW('T', 0, uint64_t)
#endif

#ifndef PIDFD_THREAD
#define PIDFD_THREAD		00000200	/* O_EXCL */
#endif

#ifndef TIOCGPTPEER
#define TIOCGPTPEER		_IO('T', 0x41)
#endif

/* struct tcp_info: tcpi_rcv_wnd (Linux 6.2), after tcpi_snd_wnd at 228 */
#define TCPI_RCV_WND_OFFSET	232

#endif
