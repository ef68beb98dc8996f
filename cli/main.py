"""The ``geoalign`` command line. Every subcommand has ``--help``; errors are one line on stderr, exit code 2.

    geoalign demo                       # set everything up and start the app
    geoalign db upgrade                 # migrate the database named by DATABASE_URL
    geoalign import examples gold.jsonl --region en-GB-manchester --dry-run
    geoalign status

Each module of ``cli/`` registers its own commands; this one only assembles them and runs the one chosen.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from sqlalchemy.exc import SQLAlchemyError

from cli import data, db, demo, models, rounds, serving, stats, users
from cli.common import Formatter, error_line
from db.errors import GeoAlignError

COMMANDS = (demo, db, data, models, serving, users, stats, rounds)  # in the order `geoalign --help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geoalign", formatter_class=Formatter,
        description="Collect human preferences on regional marketing copy and align models on them with TRL.\n\n"
                    "Configuration comes from the environment: DATABASE_URL (default: SQLite under GEOALIGN_HOME),\n"
                    "GEOALIGN_HOME (default ./.geoalign), GEOALIGN_BASE_MODEL (default: SmolLM2-135M-Instruct,\n"
                    "converted by `geoalign model build-demo`), GEOALIGN_PRECISION (auto, bf16 or fp32).",
        epilog="Run `geoalign COMMAND --help` for the options of each command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # transformers 5 warns about its own renamed arguments on every trainer; nothing a user can act on
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except GeoAlignError as exc:
        print(error_line(str(exc)), file=sys.stderr)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc)
        print(error_line(f"database ({type(exc).__name__}): {detail}"), file=sys.stderr)
    except KeyboardInterrupt:
        print("geoalign: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
