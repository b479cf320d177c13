#!/bin/sh
# lint-tests.sh - flag loops whose failures a shell test would lose.
#
#   sh scripts/lint-tests.sh [FILE...]     (default: tests/cli/*.sh)
#
# A for, while or until loop's exit status is that of the last command it
# ran, so a failure in an earlier iteration is lost unless the body exits
# on it; and inside an && or || list `set -e` is off for every part but the
# last. So a loop that is part of such a list, or of a pipeline, is flagged
# unless its body fails explicitly, with `|| exit`, `|| return` or
# `|| { ...; exit N; }`:
#
#     for f in a/*; do cmp "$f" "b/${f#a/}"; done && test -e x        (flagged)
#     for f in a/*; do cmp "$f" "b/${f#a/}" || exit 1; done && ...   (clean)
#
# The one exception is where `set -e` is in effect for the loop: the last
# part of a list inside a test_expect_success body (lib.sh runs it under
# `set -e`), when nothing follows `done`.
#
# Prints FILE:LINE: and the reason for each on stderr, and exits 1 if there
# is any; else "lint-tests: ok (N files)".
# It reads the text line by line, as sh would, but is no parser: loops are
# recognized at the start of a command (start of a line, or after &&, ||,
# |, ;, (, {, do, then, else), `done` after `;` or at the start of a line;
# comment lines and here-documents are skipped.
LC_ALL=C
export LC_ALL
[ $# -gt 0 ] || set -- tests/cli/*.sh
awk '
function ltrim(s) { sub(/^[ \t]+/, "", s); return s }
function rtrim(s) { sub(/[ \t]+$/, "", s); return s }
# does text (what precedes a command) end with an operator that joins it
# to a list or pipeline?
function joined(t) {
	t = rtrim(t)
	return t ~ /(&&|\|\||\|)$/
}
function report(i) {
	printf "%s:%d: a loop in an && list or pipeline without an explicit failure in its body: add || exit 1\n", FILENAME, sline[i]
	bad = 1
}
# a loop has ended: judge it
function close_loop(after,   i, fol, pre, body) {
	i = depth--
	after = ltrim(after)
	# redirections after done (>file, 2>&1, <file) do not end the command
	while (after ~ /^[0-9]*(>>|>&|<&|>|<)[ \t]*[^ \t;&|]+/) {
		sub(/^[0-9]*(>>|>&|<&|>|<)[ \t]*[^ \t;&|]+/, "", after)
		after = ltrim(after)
	}
	fol = after ~ /^(&&|\|\||\|)/
	pre = spre[i]
	if (!fol && !pre)
		return
	body = sbody[i]
	if (body ~ /\|\|[ \t]*(exit|return)([ \t;]|$)/ || body ~ /\|\|[ \t]*\{[^}]*(exit|return)([ \t;]|$)/)
		return
	if (!fol && sset[i])
		return
	report(i)
}
# scan one logical line (continuations joined)
function scan(s, lineno,   m, before, kw, pos, i, consumed) {
	while (s != "") {
		# the earliest loop start or done at the start of a command
		lpos = 0; dpos = 0
		if (match(s, /(^|&&|\|\||[|;({]|(^|[ \t])(do|then|else))[ \t]*(for[ \t]+[A-Za-z_][A-Za-z0-9_]*([ \t]+in([ \t]|;|$)|[ \t]*;|[ \t]*$)|while[ \t]|until[ \t])/)) {
			lpos = RSTART; llen = RLENGTH
		}
		if (match(s, /(^|;)[ \t]*done([ \t;&|<>)]|$)/)) {
			dpos = RSTART; dlen = RLENGTH
		}
		if (lpos && (!dpos || lpos < dpos)) {
			m = substr(s, lpos, llen)
			# where the keyword starts within the match
			kw = match(m, /(for|while|until)[ \t]/)
			if (!kw)
				kw = match(m, /for$/)
			before = substr(s, 1, lpos - 1 + kw - 1)
			depth++
			sline[depth] = lineno
			spre[depth] = joined(before) || (!consumed && rtrim(before) == "" && prevjoin)
			sset[depth] = inbody
			sbody[depth] = ""
			for (i = 1; i < depth; i++)
				sbody[i] = sbody[i] " " substr(s, 1, lpos + llen - 1)
			consumed = 1
			s = substr(s, lpos + llen)
		} else if (dpos) {
			pos = dpos + dlen - 1
			m = substr(s, dpos, dlen)
			# leave the character after done in the rest
			if (m ~ /done[ \t;&|<>)]$/)
				pos--
			if (depth > 0) {
				for (i = 1; i <= depth; i++)
					sbody[i] = sbody[i] " " substr(s, 1, dpos)
				close_loop(substr(s, pos + 1))
			}
			consumed = 1
			s = substr(s, pos + 1)
		} else {
			for (i = 1; i <= depth; i++)
				sbody[i] = sbody[i] " " s
			s = ""
		}
	}
}
FNR == 1 { depth = 0; inbody = 0; prevjoin = 0; cont = ""; heredoc = ""; }
# the text of a here-document is data, not code
heredoc != "" {
	t = $0
	sub(/^\t+/, "", t)
	if (t == heredoc)
		heredoc = ""
	next
}
{
	line = $0
	# join continuation lines; report at the first one
	if (cont != "") { line = cont " " line; lineno = contline } else lineno = FNR
	if (line ~ /\\$/) {
		if (cont == "") contline = FNR
		cont = substr(line, 1, length(line) - 1)
		next
	}
	cont = ""
	t = ltrim(line)
	if (t ~ /^#/ || t == "")
		next
	if (match(t, /<<-?[ \t]*["'"'"'\\]?[A-Za-z_][A-Za-z0-9_]*/)) {
		heredoc = substr(t, RSTART + 2, RLENGTH - 2)
		gsub(/^-?[ \t]*["'"'"'\\]?/, "", heredoc)
	}
	# a test_expect_success body left open at the end of its line runs
	# under set -e until the line that closes its quote
	if (t ~ /^test_expect_success[ \t]/ && t ~ /[ \t]["'"'"']$/) {
		inbody = 1
		prevjoin = 0
		scan(t, lineno)
		next
	}
	if (inbody && t ~ /^["'"'"']$/) {
		inbody = 0
		prevjoin = 0
		next
	}
	one = t ~ /^test_expect_success[ \t]/
	if (one) inbody++
	scan(t, lineno)
	if (one) inbody--
	prevjoin = joined(t)
}
END { exit bad }
' "$@" >&2 || exit 1
echo "lint-tests: ok ($# files)"
