/* qrecipe - check a recipe, print its Makefile, run it, assemble a release
 * (see man/qrecipe.1, and man/qrecipe.5 for the format). The recipe module
 * is libcommon's qc_recipe; this file parses the command line and runs make. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qc_recipe.h"
#include "tool.h"

static const char usage[] =
	"qrecipe check [-q|-v] FILE [NAME=value]...\n"
	"       qrecipe make FILE [NAME=value]...\n"
	"       qrecipe run [-j N] FILE [NAME=value]... [VARIANT]...\n"
	"       qrecipe release FILE VARIANT [NAME=value]...";

static void help(void)
{
	printf("usage: %s\n\n", usage);
	printf(
	"Quantize a model as a recipe says: a YAML file (man 5 qrecipe) that names the\n"
	"model, the calibration and evaluation token sets, and variants, each a chain\n"
	"of steps (qsmooth, qawq, qgptq, qfp8) ending in release formats (qpack) and\n"
	"release gates (qverify). llm-compressor recipes are read as they are.\n"
	"NAME=value sets a variable the recipe declares.\n\n"
	"Commands:\n"
	"  check      validate the recipe; errors name file:line:column\n"
	"  make       print a Makefile whose targets are the files every step writes:\n"
	"             qrecipe make r.yaml | make -f - -j2 [VARIANT...]; a rerun makes\n"
	"             only what is missing, out of date, or made by another command\n"
	"  run        the same in one step (make -k), then say which variants were not\n"
	"             released and why\n"
	"  release    assemble release/VARIANT from the variant's artifacts and\n"
	"             qverify reports (the Makefile's last step for each variant)\n\n"
	"Options:\n"
	"  -j, --jobs N        run: steps at once (default: the recipe's jobs, or 2)\n"
	"  -q, --quiet         check: no summary\n"
	"  -v, --verbose       check: the commands of every variant\n"
	"  -h, --help          this help\n"
	"  -V, --version       version\n\n"
	"Exit status: 0 success; 1 a release gate failed (release, run); 2 usage or\n"
	"input error (a malformed recipe: one line, file:line:column: message), or a\n"
	"step failed (run).\n");
	exit(tool_close_stdout());
}

static const struct option longopts[] = {
	{ "jobs", required_argument, NULL, 'j' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* NAME=value arguments (a name of letters, digits and _) */
static int is_setting(const char *a)
{
	const char *eq = strchr(a, '=');
	if (!eq || eq == a)
		return 0;
	for (const char *p = a; p < eq; p++)
		if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (p > a && *p >= '0' && *p <= '9')))
			return 0;
	return 1;
}

/* make runs the tools installed beside qrecipe before any on PATH */
static void path_with_own_dir(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		return;
	*slash = 0;
	const char *old = getenv("PATH");
	size_t len = strlen(self) + (old ? strlen(old) : 0) + 2;
	char *p = malloc(len);
	if (!p)
		return;
	snprintf(p, len, "%s%s%s", self, old && *old ? ":" : "", old ? old : "");
	setenv("PATH", p, 1);
	free(p);
}

static int run(qc_recipe *r, int jobs, int n_want, char **want)
{
	qc_membuf mb = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &mb, "Makefile");
	int rc = qc_recipe_makefile(r, &s);
	if (rc != 0) {
		qc_membuf_free(&mb);
		return tool_fail(rc);
	}
	path_with_own_dir();
	const char *mk = getenv("MAKE");
	if (!mk || !*mk)
		mk = "make";
	char jarg[32];
	snprintf(jarg, sizeof jarg, "-j%d", jobs);
	char **args = calloc((size_t)n_want + 6, sizeof *args);
	if (!args) {
		qc_membuf_free(&mb);
		return tool_fail(qc_seterr(QC_ENOMEM, "out of memory"));
	}
	int na = 0;
	args[na++] = (char *)mk;
	args[na++] = "-f";
	args[na++] = "-";
	args[na++] = "-k";
	args[na++] = jarg;
	for (int i = 0; i < n_want; i++)
		args[na++] = want[i];
	args[na] = NULL;
	int fd[2];
	if (pipe(fd) != 0) {
		free(args);
		qc_membuf_free(&mb);
		return tool_fail(qc_seterr(QC_EIO, "cannot make a pipe: %s", strerror(errno)));
	}
	time_t start = time(NULL);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		free(args);
		qc_membuf_free(&mb);
		return tool_fail(qc_seterr(QC_EIO, "cannot fork: %s", strerror(errno)));
	}
	if (pid == 0) {
		dup2(fd[0], 0);
		close(fd[0]);
		close(fd[1]);
		execvp(mk, args);
		fprintf(stderr, "%s: cannot run '%s': %s\n", tool_prog(), mk, strerror(errno));
		_exit(127);
	}
	close(fd[0]);
	signal(SIGPIPE, SIG_IGN);
	qc_sink out;
	qc_sink_fd(&out, fd[1], "make's standard input");
	int wrc = qc_sink_write(&out, mb.data, mb.len);
	close(fd[1]);
	qc_membuf_free(&mb);
	free(args);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127 && wrc != 0)
		return 2;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	/* what did not reach release/, and why */
	char line[2048] = "";
	size_t len = 0;
	int steps = 0, gates = 0;
	for (int i = 0; i < qc_recipe_n_variants(r); i++) {
		const char *name = qc_recipe_variant(r, i);
		int wanted = n_want == 0;
		for (int k = 0; k < n_want; k++)
			wanted |= strcmp(want[k], name) == 0;
		if (!wanted || qc_is_dir(qc_recipe_release_dir(r, i)))
			continue;
		char failed[PATH_MAX];
		snprintf(failed, sizeof failed, "%s.failed", qc_recipe_release_dir(r, i));
		struct stat sb;
		int gate = stat(failed, &sb) == 0 && sb.st_mtime >= start;
		gates += gate;
		steps += !gate;
		if (len < sizeof line - 200)
			len += (size_t)snprintf(line + len, sizeof line - len, "%s%s (%s)", len ? ", " : "", name,
			                        gate ? "a gate failed; see its .failed/quant_card.md" : "a step failed");
	}
	if (!len) {
		tool_err("make failed (status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		return 2;
	}
	tool_err("not released: %s", line);
	return steps ? 2 : 1;
}

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	int jobs = 0, quiet = 0, verbose = 0;
	const char *cmd = NULL;
	/* the command comes first; options may follow it anywhere */
	int base = 0;
	if (argc > 1 && argv[1][0] != '-') {
		cmd = argv[1];
		base = 1;
	}
	int c;
	while ((c = getopt_long(argc - base, argv + base, "j:qvhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': jobs = (int)tool_parse_i64(usage, "--jobs", optarg, 1, 1024); break;
		case 'q': quiet = 1; break;
		case 'v': verbose = 1; break;
		case 'h': help(); break;
		case 'V': tool_version();
		default: tool_bad_option(usage, argv + base);
		}
	}
	if (!cmd)
		tool_usage_error(usage, optind + base < argc ? "the command comes first (check, make, run, release)"
		                                             : "no command (check, make, run, release)");
	if (strcmp(cmd, "check") && strcmp(cmd, "make") && strcmp(cmd, "run") && strcmp(cmd, "release"))
		tool_usage_error(usage, "unknown command '%s' (check, make, run, release)", cmd);
	char **rest = argv + base + optind;
	int n_rest = argc - base - optind;
	if (n_rest < 1)
		tool_usage_error(usage, "no recipe file given");
	const char *file = rest[0];
	/* the rest: NAME=value settings, and variants for run and release */
	char **sets = calloc((size_t)n_rest + 1, sizeof *sets), **names = calloc((size_t)n_rest + 1, sizeof *names);
	if (!sets || !names)
		return tool_fail(qc_seterr(QC_ENOMEM, "out of memory"));
	int n_sets = 0, n_names = 0;
	for (int i = 1; i < n_rest; i++) {
		if (is_setting(rest[i]))
			sets[n_sets++] = rest[i];
		else
			names[n_names++] = rest[i];
	}
	if (strcmp(cmd, "release") == 0 && n_names != 1)
		tool_usage_error(usage, n_names ? "release takes one variant" : "release: which variant?");
	if ((strcmp(cmd, "check") == 0 || strcmp(cmd, "make") == 0) && n_names)
		tool_usage_error(usage, "'%s' is not a NAME=value setting", names[0]);
	if (jobs && strcmp(cmd, "run") != 0)
		tool_usage_error(usage, "--jobs is for run");
	qc_recipe *r;
	int rc = qc_recipe_load(&r, file, n_sets, sets);
	if (rc != 0) {
		free(sets);
		free(names);
		return tool_fail(rc);
	}
	for (int i = 0; i < n_names; i++)
		if (qc_recipe_find_variant(r, names[i]) < 0) {
			char list[1024] = "";
			size_t len = 0;
			for (int k = 0; k < qc_recipe_n_variants(r) && len < sizeof list - 80; k++)
				len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", k ? " " : "",
				                        qc_recipe_variant(r, k));
			tool_err("%s: no variant '%s' (variants: %s)", file, names[i], list);
			qc_recipe_free(r);
			free(sets);
			free(names);
			return 2;
		}
	int st = 0;
	if (strcmp(cmd, "check") == 0) {
		if (!quiet) {
			fprintf(stderr, "%s: %s: ok: %s%d variant%s:", tool_prog(), file,
			        qc_recipe_kind_of(r) == QC_RECIPE_LLMC ? "an llm-compressor recipe, " : "",
			        qc_recipe_n_variants(r), qc_recipe_n_variants(r) == 1 ? "" : "s");
			for (int i = 0; i < qc_recipe_n_variants(r); i++)
				fprintf(stderr, "%s %s (%s)", i ? "," : "", qc_recipe_variant(r, i),
				        qc_recipe_variant_tools(r, i));
			fputc('\n', stderr);
		}
		for (int i = 0; verbose && i < qc_recipe_n_variants(r); i++) {
			qc_sink out;
			qc_sink_fd(&out, 1, "<stdout>");
			printf("# %s\n", qc_recipe_variant(r, i));
			fflush(stdout);
			if ((rc = qc_recipe_commands(r, i, &out)) != 0) {
				st = tool_fail(rc);
				break;
			}
		}
		if (st == 0)
			st = tool_close_stdout();
	} else if (strcmp(cmd, "make") == 0) {
		qc_sink out;
		qc_sink_fd(&out, 1, "<stdout>");
		rc = qc_recipe_makefile(r, &out);
		st = rc ? tool_fail(rc) : 0;
	} else if (strcmp(cmd, "release") == 0) {
		int vi = qc_recipe_find_variant(r, names[0]);
		rc = qc_recipe_release(r, vi);
		st = rc ? tool_fail(rc) : 0;
	} else {
		st = run(r, jobs ? jobs : qc_recipe_jobs(r) ? qc_recipe_jobs(r) : 2, n_names, names);
	}
	qc_recipe_free(r);
	free(sets);
	free(names);
	return st;
}
