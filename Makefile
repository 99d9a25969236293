# cryo — checkpoint/restore for Linux containers.
#   make          build build/cryo (and the test programs)
#   make deps     install the Debian packages a fresh machine needs
#   make test     build everything and run the pytest suite (and part of it with make asan's cryo)
#   make asan     build cryo with AddressSanitizer and UBSan and run part of the suite with it
#   make fuzz     run the libFuzzer harnesses (FUZZ_SECONDS each, default 300)
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
	    python3 python3-pytest python3-cryptography busybox-static clang libclang-rt-14-dev \
	    iproute2 util-linux tcpdump openssl \
	    protobuf-compiler python3-protobuf
# the runtimes whose checkpoints cryo serves (test_runc.py, test_containerd.py,
# test_podman.py, test_lxc.py); not their recommended criu, which cryo stands
# in for; installed with no service started (lxc's lxc-net would make a
# bridge and run dnsmasq)
RUNTIME_PKGS := runc containerd podman lxc

WARN	:= -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS	?= -O2 -g
CFLAGS	+= -std=gnu11 $(WARN) -D_GNU_SOURCE -Icriu-core/include -Iimages -Ipagesrv -Imigrate -I$(B)/gen -fno-strict-aliasing
NL_CFLAGS := $(shell pkg-config --cflags libnl-route-3.0 2>/dev/null || echo -I/usr/include/libnl3)
CFLAGS	+= $(NL_CFLAGS) $(SAN_CFLAGS)
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
CORE_SRC := $(wildcard criu-core/*.c criu-core/arch/x86_64/*.c pagesrv/*.c migrate/*.c) images/image.c images/wire.c images/manifest.c images/door.c images/crc32c.c
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
$(B)/ct-ipc $(B)/ct-counter $(B)/ct-udpecho $(B)/ct-unixpair: $(B)/%: scripts/%.c
	@echo "  CC      $<"
	$(Q)$(CC) -O2 -static -std=gnu11 -Wall -Wextra -Werror -o $@ $<

all: $(B)/cryo $(PROGS) $(B)/sample-counter $(B)/bench-mem $(B)/host-init $(B)/ct-ipc $(B)/ct-counter $(B)/ct-udpecho $(B)/ct-unixpair libcriu
.DEFAULT_GOAL := all

# the runtimes' services (containerd) must not start on install: the tests
# start their own; a policy-rc.d that says no is put in place for the
# install when the machine has none, and taken away after
deps:
	@if ! dpkg -s $(DEB_PKGS) $(RUNTIME_PKGS) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) || exit 1; \
		made=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made=1; \
		fi; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(RUNTIME_PKGS); rc=$$?; \
		[ -z "$$made" ] || rm -f /usr/sbin/policy-rc.d; \
		exit $$rc; \
	fi

test: deps all crun asan-build fuzz-build
	cd test && /usr/bin/python3 -m pytest -v $(PYTEST_ARGS)
	$(MAKE) asan-run

# ---- fuzzing: libFuzzer harnesses (test/fuzz/) built with clang, ASan and UBSan ----
# fuzz-image: one image file as cryo show and cryo restore read and check it;
# fuzz-frame: the page server's frames after the handshake.
FUZZ_B	    := $(B)/fuzz
FUZZ_CC	    := clang
FUZZ_CFLAGS  = $(filter-out -O2,$(CFLAGS)) -O1 -g -fsanitize=fuzzer-no-link,address,undefined \
	       -fno-sanitize-recover=all -Wno-error
FUZZ_OBJ    := $(patsubst %.c,$(FUZZ_B)/obj/%.o,$(CORE_SRC)) $(patsubst $(B)/gen/%.c,$(FUZZ_B)/obj/gen/%.o,$(PROTO_C))
FUZZERS	    := $(patsubst test/fuzz/%.c,$(FUZZ_B)/%,$(wildcard test/fuzz/fuzz-*.c))
FUZZ_SECONDS ?= 300

$(FUZZ_B)/obj/gen/%.o: $(B)/gen/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
# cli.c's main is libFuzzer's
$(FUZZ_B)/obj/%.o: %.c $(PROTO_H) $(BLOBS)
	@mkdir -p $(dir $@)
	@echo "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(if $(filter criu-core/cli.c,$<),-Dmain=cryo_main) -MMD -MP -c $< -o $@
$(FUZZ_B)/fuzz-%: test/fuzz/fuzz-%.c $(FUZZ_OBJ)
	@echo "  FUZZLD  $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)
-include $(FUZZ_OBJ:.o=.d)

fuzz-build: $(FUZZERS)
# every harness for FUZZ_SECONDS, seeded with test/fuzz/corpus; crashes land in build/fuzz
fuzz: deps fuzz-build
	scripts/fuzz $(FUZZ_SECONDS)

# ---- cryo with AddressSanitizer and UBSan (the blobs keep their own flags) ----
# Any finding aborts cryo, so the test that ran it fails and shows the report.
ASAN_B	  := $(B)/asan
ASAN_CRYO := $(ASAN_B)/cryo
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -Wno-error
# a representative part of the suite: dump and restore of every kind of state, containers,
# images read and refused, the page server, a killed cryo's guardian
ASAN_TESTS ?= test_basic.py test_threads.py test_memory.py test_fdkinds.py test_tree.py test_state.py \
	test_container.py test_predump.py test_pagesrv.py test_errors.py test_failures.py test_show_check.py \
	test_criu_rpc.py test_guardian.py test_stats.py
asan-build:
	$(MAKE) B=$(ASAN_B) SAN_CFLAGS="$(SAN_FLAGS)" $(ASAN_CRYO)
asan-run:
	cd test && CRYO_BIN=$(abspath $(ASAN_CRYO)) ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
		/usr/bin/python3 -m pytest -q $(ASAN_TESTS)
asan: deps all asan-build asan-run

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

.PHONY: all deps test bench bench-migrate demo install clean asan asan-build asan-run fuzz fuzz-build
.SECONDARY:
