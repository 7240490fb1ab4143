/* commands.h - the commands of the stochflow program, one per file (train.c, sample.c,
 * logp.c, info.c, demo.c), dispatched by main() in stochflow.c. Each takes the arguments
 * after the command name and returns the exit status (doc/cli.md). */
#ifndef STOCHFLOW_TOOLS_COMMANDS_H
#define STOCHFLOW_TOOLS_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_logp(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_demo(int argc, char **argv);

#endif
