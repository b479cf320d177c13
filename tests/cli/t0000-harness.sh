#!/bin/sh
# t0000: the test harness itself works.
. "$(dirname "$0")/lib.sh"
test_expect_success 'a passing body passes' 'true'
test_expect_code 3 'exit status is checked' 'exit 3'
test_done
