/* Flag bits stored in the mm and pagemap images; shared with the restorer. */
#ifndef CRYO_MEM_FLAGS_H
#define CRYO_MEM_FLAGS_H

/* VmaEntry.madv: advice and states from smaps VmFlags to put back */
#define VMA_MADV_HUGEPAGE	(1u << 0)	/* hg */
#define VMA_MADV_NOHUGEPAGE	(1u << 1)	/* nh */
#define VMA_MADV_DONTFORK	(1u << 2)	/* dc */
#define VMA_MADV_WIPEONFORK	(1u << 3)	/* wf */
#define VMA_MADV_DONTDUMP	(1u << 4)	/* dd */
#define VMA_MADV_MERGEABLE	(1u << 5)	/* mg */
#define VMA_MADV_RANDOM		(1u << 6)	/* rr */
#define VMA_MADV_SEQUENTIAL	(1u << 7)	/* sr */
#define VMA_MADV_LOCKED		(1u << 8)	/* lo: mlock()ed */
#define VMA_MADV_LOCKONFAULT	(1u << 9)	/* lf: mlock2(MLOCK_ONFAULT) */

/* PagemapEntry.flags */
#define PE_PRESENT		(1u << 0)	/* the bytes follow in the pages image */
#define PE_PARENT		(1u << 1)	/* shared copy-on-write with the parent: its bytes */
#define PE_IN_PREV		(1u << 2)	/* unchanged since the previous dump: in parent/ */
#define PE_LAZY			(1u << 3)	/* still in the source's memory: post-copy fetches it */

#endif
