/*
 * main.c - the `ratchet` executable: dispatches to a subcommand.
 *
 *   ratchet run      run a command over many inputs (cmd_run.c)
 *   ratchet worker   serve the protocol on stdio (cmd_worker.c)
 *   ratchet cache    inspect and maintain the result cache (cmd_cache.c)
 *   ratchet version  print the version
 *   ratchet help     print the overview, or a subcommand's help
 * Unknown subcommands and options get a message naming them and exit 255.
 */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "diag.h"

static void usage(FILE *f) {
  fprintf(f, "usage: ratchet COMMAND [OPTIONS] [ARGS...]\n"
             "\n"
             "Commands:\n"
             "  run      run a command over many inputs, in parallel, with "
             "retries,\n"
             "           timeouts, a result cache and a resumable job log\n"
             "  worker   serve ratchet's protocol on stdin/stdout (started by "
             "run)\n"
             "  cache    show and maintain the result cache "
             "(stats|gc|clear|verify|explain)\n"
             "  version  print the version\n"
             "  help     print this help, or `ratchet help COMMAND`\n"
             "\n"
             "`ratchet COMMAND --help` describes each command; man ratchet and "
             "docs/cli.md\ndescribe them all.\n");
}

static int version(int argc, char **argv) {
  if (argc > 2 &&
      (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
    printf("usage: ratchet version\n\nPrints the version of ratchet.\n");
    return CLI_EXIT_OK;
  }
  if (argc > 2) {
    char show[CLI_SHOW_SIZE];
    fprintf(stderr, "ratchet version: unexpected argument '%s'\n",
            cli_show(argv[2], show));
    return CLI_EXIT_USAGE;
  }
  printf("ratchet %s\n", RATCHET_CLI_VERSION);
  return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
  char show[CLI_SHOW_SIZE];
  if (argc < 2) {
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "run") == 0)
    return cli_cmd_run(argc, argv);
  if (strcmp(cmd, "worker") == 0)
    return cli_cmd_worker(argc, argv);
  if (strcmp(cmd, "cache") == 0)
    return cli_cmd_cache(argc, argv);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
    return version(argc, argv);
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 ||
      strcmp(cmd, "-h") == 0) {
    if (argc > 2) {
      static char help_flag[] = "--help";
      char *sub[] = {argv[0], argv[2], help_flag, NULL};
      if (strcmp(argv[2], "run") == 0)
        return cli_cmd_run(3, sub);
      if (strcmp(argv[2], "worker") == 0)
        return cli_cmd_worker(3, sub);
      if (strcmp(argv[2], "cache") == 0)
        return cli_cmd_cache(3, sub);
      if (strcmp(argv[2], "version") == 0)
        return version(3, sub);
      fprintf(stderr, "ratchet help: unknown command '%s'\n",
              cli_show(argv[2], show));
      return CLI_EXIT_USAGE;
    }
    usage(stdout);
    return CLI_EXIT_OK;
  }
  fprintf(stderr,
          "ratchet: unknown command '%s' (expected run, worker, cache, "
          "version or help)\n",
          cli_show(cmd, show));
  return CLI_EXIT_USAGE;
}
