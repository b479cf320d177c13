#!/bin/sh
# embed.sh SYMBOL FILE: print a C file defining the bytes of FILE as
#   const char SYMBOL[]; const size_t SYMBOL_len;
# (NUL-terminated, the terminator not counted). Uses od, so it needs nothing
# beyond coreutils.
set -eu
sym=$1
file=$2
echo "/* generated from $file by scripts/embed.sh; do not edit */"
echo "#include <stddef.h>"
echo "const char $sym[] = {"
od -An -v -tx1 "$file" | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'
echo "0x00 };"
echo "const size_t ${sym}_len = sizeof $sym - 1;"
