# cryo's libcriu (criu-core/libcriu/), included by the top Makefile.
#   make libcriu   build/lib/libcriu.so.2, build/lib/include/criu/criu.h and
#                  build/lib/pkgconfig/criu.pc: what a program built against
#                  CRIU's libcriu (crun) needs to checkpoint through cryo
#   make install   (the top Makefile's) also puts them in $(PREFIX)/lib,
#                  $(PREFIX)/include/criu and $(PREFIX)/lib/pkgconfig
#   make crun      build/crun/crun: Debian's crun built with checkpoint
#                  support against build/lib (scripts/build-crun)
#
# The library is its own objects, built -fPIC with hidden visibility (only
# the criu_* interface is exported), with the RPC's protobuf-c code.

LIBCRIU_DIR	:= $(B)/lib
LIBCRIU_SO	:= $(LIBCRIU_DIR)/libcriu.so.2
LIBCRIU_H	:= $(LIBCRIU_DIR)/include/criu/criu.h
LIBCRIU_PC	:= $(LIBCRIU_DIR)/pkgconfig/criu.pc
LIBCRIU_OBJ	:= $(B)/obj/libcriu/libcriu.o $(B)/obj/libcriu/rpc.pb-c.o
LIBCRIU_CFLAGS	:= -O2 -g -std=gnu11 $(WARN) -D_GNU_SOURCE -fPIC -fvisibility=hidden \
		   -Icriu-core/libcriu -I$(B)/gen

# the CRIU version cryo answers as (VERSION over the RPC): crun asks
# pkg-config for criu > 3.16.1 before it offers pre-dumps
LIBCRIU_VERSION	:= $(shell sed -n 's/^\#define CRIU_COMPAT_MAJOR[[:space:]]*//p' criu-core/include/cryo.h).$(shell \
		   sed -n 's/^\#define CRIU_COMPAT_MINOR[[:space:]]*//p' criu-core/include/cryo.h).0

$(B)/obj/libcriu/libcriu.o: criu-core/libcriu/libcriu.c criu-core/libcriu/criu.h $(B)/gen/rpc.pb-c.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(LIBCRIU_CFLAGS) -c $< -o $@
$(B)/obj/libcriu/rpc.pb-c.o: $(B)/gen/rpc.pb-c.c $(B)/gen/rpc.pb-c.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LIBCRIU_CFLAGS) -Wno-error -c $< -o $@

$(LIBCRIU_SO): $(LIBCRIU_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) -shared -Wl,-soname,libcriu.so.2 -Wl,--no-undefined -o $@ $^ -lprotobuf-c
	$(Q)ln -sf libcriu.so.2 $(LIBCRIU_DIR)/libcriu.so

$(LIBCRIU_H): criu-core/libcriu/criu.h
	@mkdir -p $(dir $@)
	$(Q)cp $< $@

$(LIBCRIU_PC): criu-core/libcriu/libcriu.mk criu-core/include/cryo.h
	@mkdir -p $(dir $@)
	@echo "  GEN     $@"
	$(Q)printf '%s\n' 'prefix=$${pcfiledir}/..' 'libdir=$${prefix}' 'includedir=$${prefix}/include' '' \
		'Name: CRIU' 'Description: cryo'"'"'s libcriu: checkpoint/restore through cryo swrk' \
		'Version: $(LIBCRIU_VERSION)' 'Libs: -L$${libdir} -lcriu' 'Cflags: -I$${includedir}' >$@

libcriu: $(LIBCRIU_SO) $(LIBCRIU_H) $(LIBCRIU_PC)

# the installed criu.pc names the installed paths; ldconfig for programs that dlopen() it (crun)
install-libcriu: libcriu
	install -D -m 0755 $(LIBCRIU_SO) $(DESTDIR)$(PREFIX)/lib/libcriu.so.2
	ln -sf libcriu.so.2 $(DESTDIR)$(PREFIX)/lib/libcriu.so
	install -D -m 0644 $(LIBCRIU_H) $(DESTDIR)$(PREFIX)/include/criu/criu.h
	mkdir -p $(DESTDIR)$(PREFIX)/lib/pkgconfig
	sed -e 's|^prefix=.*|prefix=$(PREFIX)|' -e 's|^libdir=.*|libdir=$${prefix}/lib|' \
		$(LIBCRIU_PC) >$(DESTDIR)$(PREFIX)/lib/pkgconfig/criu.pc
	if [ -z "$(DESTDIR)" ]; then ldconfig; fi

$(B)/crun/crun: scripts/build-crun $(LIBCRIU_H) $(LIBCRIU_PC)
	scripts/build-crun

crun: $(B)/crun/crun

.PHONY: libcriu install-libcriu crun
