/* stochflow.c - main() of the stochflow command-line program: dispatches to the
 * commands (train.c, sample.c, logp.c, info.c, demo.c). Built on the public API of
 * <stochflow.h> only. Usage and behaviour: doc/cli.md.
 *
 * Conventions: results go to stdout (with --json, one JSON object is the last line);
 * errors are one line "stochflow: ..." on stderr and a non-zero exit status (2 for
 * usage errors, 1 for everything else, 130 when interrupted); progress goes to stderr
 * (a bar on a terminal, a line every few seconds elsewhere). */
#define _POSIX_C_SOURCE 200809L

#include <string.h>

#include "commands.h"
#include "common.h"

/* ---- dispatch ------------------------------------------------------------------------------- */

static void usage(void) {
    printf(
            "usage: stochflow COMMAND [options]   (libstochflow %s)\n"
            "\n"
            "commands:\n"
            "  train   train a flow:       stochflow train --data SRC --out MODEL [--steps N]\n"
            "  sample  draw samples:       stochflow sample --model MODEL -n N --out FILE\n"
            "  logp    log-likelihood:     stochflow logp --model MODEL --data SRC\n"
            "  info    describe a model:   stochflow info --model MODEL\n"
            "  demo    the checkerboard demo with pictures: stochflow demo [--outdir DIR]\n"
            "\n"
            "SRC is a toy (swissroll circles rings moons 8gaussians pinwheel 2spirals\n"
            "checkerboard line cos) or a .npy/.csv file of shape n x d; image data\n"
            "(fashion-mnist[:test], idx:PATH, pngdir:PATH) trains a U-Net.\n"
            "Every command takes --json and --help. See doc/cli.md.\n",
            stochflow_version_string());
}

int main(int argc, char **argv) {
    /* The OpenMP wait policy is left to the environment: libgomp's default was 1.7x
     * (2-D) to 5.5x (small U-Net) faster than PASSIVE on an otherwise idle machine, and
     * no policy saves a machine with more busy threads than cores (doc/threading.md). */
    if (argc < 2) {
        cli_fail("missing command (train, sample, logp, info, demo; see stochflow --help)");
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage();
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("stochflow %s\n", stochflow_version_string());
        return 0;
    }
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } COMMANDS[] = {{"train", cmd_train},
                    {"sample", cmd_sample},
                    {"logp", cmd_logp},
                    {"info", cmd_info},
                    {"demo", cmd_demo}};
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; ++i)
        if (strcmp(cmd, COMMANDS[i].name) == 0) {
            int rc = COMMANDS[i].run(argc - 2, argv + 2);
            return rc != 0 && stop_requested ? EXIT_INTERRUPTED : rc;
        }
    cli_fail("unknown command '%s' (train, sample, logp, info, demo; see stochflow --help)", cmd);
    return EXIT_USAGE;
}
