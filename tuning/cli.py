"""The `tuning` command: dispatch to a subcommand module without importing the heavy ones."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

COMMANDS = {
    "sweep": ("tuning.commands.sweep", "run or resume a hyperparameter sweep (Hydra overrides as arguments)"),
    "report": ("tuning.commands.report", "show a study's trials as a table (no TensorFlow needed)"),
    "train": (
        "tuning.commands.train",
        "train the final model from a study's best.yaml, test it once, register it",
    ),
    "predict": (
        "tuning.commands.predict",
        "apply a final model to new raw rows (CSV/Parquet), write predictions",
    ),
    "serve": (
        "tuning.commands.serve",
        "serve a study's champion model over HTTP with MLflow (raw rows in, predictions out)",
    ),
    "storage-proxy": (
        "tuning.commands.storage_proxy",
        "Optuna's gRPC storage proxy: many workers, one database connection pool",
    ),
}

USAGE = (
    "usage: tuning COMMAND [ARGS...]\n\ncommands:\n"
    + "\n".join(f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items())
    + (
        "\n\nexamples:\n"
        "  tuning sweep                                  # tune the built-in plants example\n"
        "  tuning sweep study.name=plants-7 seed=7 sampler=random  # another seed: a new study\n"
        "  tuning sweep --cfg job                        # print the composed config, train nothing\n"
        "  tuning report plants\n"
        "  tuning train study=plants                     # final model: replay, test, save, register\n"
        "  tuning predict model=experiments/plants/final/model.keras data.path=new_plants.csv\n"
        "  tuning serve study=plants                     # http://127.0.0.1:5001/invocations\n\n"
        "`tuning COMMAND --help` shows a command's own help."
    )
)


def main(argv: Sequence[str] | None = None) -> int:
    from tuning import interrupts

    try:
        with interrupts.for_this_command():  # Ctrl-C exits 130 with its line, never by SIGINT itself
            return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `tuning sweep --help | head`: the reader left; no traceback
        # Python's documented recipe: point stdout at devnull so the interpreter's final flush
        # does not raise again (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it


def _dispatch(args: list[str]) -> int:
    from tuning.logs import leave_library_logging_to_us

    leave_library_logging_to_us()
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] == "--version":
        from tuning import __version__

        print(f"tuning {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if command == "sweep" and {"-h", "--help"}.intersection(rest):
        from tuning.commands.help import sweep_help

        print(sweep_help(rest))
        return 0
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
