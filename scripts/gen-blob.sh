#!/bin/sh
# Turn a linked position-independent blob into a C header:
#   <name>_blob[]            the bytes of the loadable sections, entry first
#   <name>_BLOB_SIZE         bytes to map, including .bss (zero filled)
#   <name>_off_<sym>         offset of every symbol named __export_<sym>
# Fails if the blob would need relocation at load time (absolute addresses
# or a GOT), since it is copied to an arbitrary address and run as is.
set -eu
name=$1 elf=$2 out=$3
bin=${elf%.elf}.bin

if readelf -rW "$elf" | grep -Eq 'R_X86_64_(64|32|32S|GLOB_DAT|JUMP_SLOT|RELATIVE|GOTPCREL) '; then
	echo "gen-blob: $elf needs load-time relocations:" >&2
	readelf -rW "$elf" | grep -E 'R_X86_64_(64|32|32S|GLOB_DAT|JUMP_SLOT|RELATIVE|GOTPCREL) ' >&2
	exit 1
fi
if readelf -SW "$elf" | grep -q ' \.got'; then
	echo "gen-blob: $elf has a GOT; build with -fvisibility=hidden" >&2
	exit 1
fi
objcopy -O binary -j .text -j .data -j .rodata "$elf" "$bin"

{
	echo "/* Generated from $elf by scripts/gen-blob.sh. Do not edit. */"
	echo "#pragma once"
	nm "$elf" | awk -v n="$name" '$3 ~ /^__export_/ {
		printf "#define %s_off_%s 0x%sUL\n", n, substr($3, 10), $1 }'
	echo "static const unsigned char ${name}_blob[] __attribute__((aligned(16))) = {"
	od -An -v -tx1 "$bin" | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'
	echo "};"
	echo "#define ${name}_BLOB_SIZE ${name}_off_blob_end"
} > "$out.tmp"
mv "$out.tmp" "$out"
