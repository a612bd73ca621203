/*
 * cmds.h - the subcommands of the `ratchet` executable. Each takes main's
 * argc/argv (argv[1] is the subcommand's name) and returns the exit status.
 */
#ifndef RATCHET_CLI_CMDS_H
#define RATCHET_CLI_CMDS_H

#ifndef RATCHET_CLI_VERSION
#define RATCHET_CLI_VERSION "0.0.0"
#endif

int cli_cmd_run(int argc, char **argv);
int cli_cmd_worker(int argc, char **argv);
int cli_cmd_cache(int argc, char **argv);

#endif
