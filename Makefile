# cryo — checkpoint/restore for Linux containers.
#   make          build build/cryo (and the test programs)
#   make deps     install the Debian packages a fresh machine needs
#   make test     build everything and run the pytest suite
#   make bench    run the memory dump/restore benchmark
#   make bench-migrate  run the live-migration benchmark (two hosts on this machine)
#   make install  install cryo to $(PREFIX)/sbin, its libcriu to $(PREFIX)/lib

CC	?= gcc
LD	?= ld
OBJCOPY	?= objcopy
PREFIX	?= /usr/local
B	:= build
V	?= 0
Q	:= $(if $(filter 1,$(V)),,@)

DEB_PKGS := build-essential pkg-config protobuf-c-compiler libprotobuf-c-dev \
	    libnl-3-dev libnl-route-3-dev libnet1-dev libbsd-dev zlib1g-dev \
	    libnftnl-dev libmnl-dev libssl-dev \
	    python3 python3-pytest python3-cryptography busybox-static \
	    iproute2 util-linux tcpdump openssl
# the runtimes whose checkpoints cryo serves (test_runc.py); not their
# recommended criu, which cryo stands in for
RUNTIME_PKGS := runc

WARN	:= -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS	?= -O2 -g
CFLAGS	+= -std=gnu11 $(WARN) -D_GNU_SOURCE -Icriu-core/include -Iimages -Ipagesrv -Imigrate -I$(B)/gen -fno-strict-aliasing
NL_CFLAGS := $(shell pkg-config --cflags libnl-route-3.0 2>/dev/null || echo -I/usr/include/libnl3)
CFLAGS	+= $(NL_CFLAGS)
LDLIBS	:= -lprotobuf-c -lz -lcrypto -lnl-route-3 -lnl-3 -lnftnl -lmnl

# ---- image schemas ----
PROTOS		:= $(wildcard images/*.proto)
PROTO_C		:= $(patsubst images/%.proto,$(B)/gen/%.pb-c.c,$(PROTOS))
PROTO_H		:= $(PROTO_C:.c=.h)
PROTO_OBJ	:= $(patsubst $(B)/gen/%.c,$(B)/obj/gen/%.o,$(PROTO_C))

$(B)/gen/%.pb-c.c $(B)/gen/%.pb-c.h: images/%.proto
	@mkdir -p $(B)/gen
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=images --c_out=$(B)/gen $<

# ---- position-independent blobs (parasite, restorer) ----
# Built freestanding (-nostdlib -fpie), linked by criu-core/pie/pie.lds with
# the entry first, checked to need no relocation, then turned into a C array
# plus exported-symbol offsets by scripts/gen-blob.sh.
PIE_CFLAGS := -O2 -std=gnu11 $(WARN) -D_GNU_SOURCE -DCRYO_PIE -fpie -ffreestanding \
	-fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables \
	-fvisibility=hidden -mgeneral-regs-only -fno-jump-tables -fcf-protection=none \
	-nostdlib -Icriu-core/include -Icriu-core/pie -Iimages
PIE_LIB := $(B)/pie/pie-lib.o $(B)/pie/crc32c.o

$(B)/pie/%.o: criu-core/pie/%.c criu-core/pie/*.h
	@mkdir -p $(B)/pie
	@echo "  PIECC   $<"
	$(Q)$(CC) $(PIE_CFLAGS) -c $< -o $@
$(B)/pie/crc32c.o: images/crc32c.c images/crc32c.h
	@mkdir -p $(B)/pie
	$(Q)$(CC) $(PIE_CFLAGS) -c $< -o $@
$(B)/pie/parasite-%.o: criu-core/parasite/%.c criu-core/pie/*.h criu-core/include/parasite-proto.h
	@mkdir -p $(B)/pie
	@echo "  PIECC   $<"
	$(Q)$(CC) $(PIE_CFLAGS) -c $< -o $@
$(B)/pie/restorer-%.o: criu-core/restorer/%.c criu-core/pie/*.h criu-core/include/restorer-proto.h
	@mkdir -p $(B)/pie
	@echo "  PIECC   $<"
	$(Q)$(CC) $(PIE_CFLAGS) -c $< -o $@
$(B)/pie/parasite-%.o: criu-core/parasite/%.S
	@mkdir -p $(B)/pie
	$(Q)$(CC) $(PIE_CFLAGS) -c $< -o $@
$(B)/pie/restorer-%.o: criu-core/restorer/%.S
	@mkdir -p $(B)/pie
	$(Q)$(CC) $(PIE_CFLAGS) -c $< -o $@

$(B)/pie/%.elf: criu-core/pie/pie.lds scripts/gen-blob.sh
	@echo "  PIELD   $@"
	$(Q)$(LD) -q -static -z noexecstack --no-warn-rwx-segments -T criu-core/pie/pie.lds -o $@ $(filter %.o,$^)
$(B)/pie/parasite.elf: $(B)/pie/parasite-head.o $(B)/pie/parasite-parasite.o $(PIE_LIB)
$(B)/pie/restorer.elf: $(B)/pie/restorer-head.o $(B)/pie/restorer-restorer.o $(PIE_LIB)

$(B)/gen/%-blob.h: $(B)/pie/%.elf scripts/gen-blob.sh
	@echo "  BLOB    $@"
	@mkdir -p $(B)/gen
	$(Q)scripts/gen-blob.sh $* $< $@

BLOBS := $(B)/gen/parasite-blob.h $(B)/gen/restorer-blob.h

# ---- the cryo binary ----
CORE_SRC := $(wildcard criu-core/*.c criu-core/arch/x86_64/*.c pagesrv/*.c migrate/*.c) images/image.c images/door.c images/crc32c.c
CORE_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(CORE_SRC))

$(B)/obj/gen/%.o: $(B)/gen/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -Wno-error -c $< -o $@
$(B)/obj/%.o: %.c $(PROTO_H) $(BLOBS)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/cryo: $(CORE_OBJ) $(PROTO_OBJ)
	@echo "  LINK    $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

-include $(CORE_OBJ:.o=.d)

# ---- test programs ----
PROG_SRC := $(wildcard test/progs/*.c)
PROGS	 := $(patsubst test/progs/%.c,$(B)/progs/%,$(PROG_SRC))
$(B)/progs/%: test/progs/%.c test/progs/*.h
	@mkdir -p $(B)/progs
	@echo "  CC      $<"
	$(Q)$(CC) -O1 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -Itest/progs -o $@ $< -lm

# ---- demo and benchmark helpers ----
$(B)/sample-counter $(B)/bench-mem $(B)/host-init: $(B)/%: scripts/%.c
	@echo "  CC      $<"
	$(Q)$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -o $@ $<

# the sample containers' own programs: static, they run in a busybox root
$(B)/ct-ipc $(B)/ct-counter $(B)/ct-udpecho: $(B)/%: scripts/%.c
	@echo "  CC      $<"
	$(Q)$(CC) -O2 -static -std=gnu11 -Wall -Wextra -Werror -o $@ $<

all: $(B)/cryo $(PROGS) $(B)/sample-counter $(B)/bench-mem $(B)/host-init $(B)/ct-ipc $(B)/ct-counter $(B)/ct-udpecho libcriu
.DEFAULT_GOAL := all

deps:
	@if ! dpkg -s $(DEB_PKGS) $(RUNTIME_PKGS) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(RUNTIME_PKGS); \
	fi

test: deps all crun
	cd test && /usr/bin/python3 -m pytest -v $(PYTEST_ARGS)

bench: deps all
	scripts/bench

bench-migrate: deps all
	scripts/bench-migrate

demo: deps all
	scripts/demo

install: $(B)/cryo install-libcriu
	install -D -m 0755 $(B)/cryo $(DESTDIR)$(PREFIX)/sbin/cryo

clean:
	rm -rf $(B)

include criu-core/libcriu/libcriu.mk

.PHONY: all deps test bench bench-migrate demo install clean
.SECONDARY:
