"""The ``crossguard`` command. Each subcommand lives with its layer and is imported only when chosen,
so ``crossguard screen`` never imports torch and ``crossguard --help`` is instant.

A subcommand is a ``module:function`` pair; the function takes an ``argparse.ArgumentParser``, adds its
arguments and calls ``parser.set_defaults(func=run)`` where ``run(args) -> int`` is the exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module:function that configures the subparser, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("crossguard.info:configure", "versions, ONNX Runtime providers, GPU, where backbones are found"),
    "screen": ("crossguard.runtime.cli:configure_screen", "screen an image+text pair or a manifest"),
    "serve": ("crossguard.runtime.server:configure", "local HTTP server and OpenAI-compatible pre-filter proxy"),
    "build-data": ("crossguard.train.dataset_builder:configure", "build a small image+text dataset from seeds and the image pool"),
    "forge": ("crossguard.train.impforge.cli:configure", "ImpForge: generate implicit joint-modal red-team samples"),
    "train": ("crossguard.train.guard.composite_cli:configure",
              "train the composite guard (real corpora, image pool, recipe); --seeds, --leave-one-out"),
    "train-fusion": ("crossguard.train.guard.cli:configure", "train a fusion-head guard (the v20 architecture)"),
    "eval": ("crossguard.train.guard.evaluate:configure", "evaluate a guard on a manifest or a dev set"),
    "export": ("crossguard.export.cli:configure", "distil, export to ONNX, quantise, write a verified bundle"),
    "bench": ("crossguard.benchmarks.cli:configure", "latency and detection benchmarks"),
}


def _help_text() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "commands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(
        prog="crossguard", description="CrossGuard-Edge: on-device multimodal jailbreak guard.",
        epilog=_help_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="store_true", help="print the version and exit")
    top.add_argument("command", nargs="?", choices=sorted(COMMANDS), metavar="COMMAND")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] == "--version":
        from . import __version__
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.print_usage(sys.stderr)
        print(f"crossguard: unknown command {name!r}\n{_help_text()}", file=sys.stderr)
        return 2
    target, help_ = COMMANDS[name]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"crossguard {name}: cannot import {module_name}: {e}\n"
              "This command may need an extra: pip install 'crossguard-edge[train]'", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"crossguard {name}", description=help_)
    getattr(module, func_name)(parser)
    args = parser.parse_args(rest)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
