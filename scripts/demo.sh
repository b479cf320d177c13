#!/bin/sh
# demo.sh: the built-in example (make demo). Filled in as the tools land.
set -eu
echo "demo: nothing to run yet"
