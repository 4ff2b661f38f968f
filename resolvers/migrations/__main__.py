"""Alembic's command line over the store's migrations, configured in code (no alembic.ini).

    python -m resolvers.migrations --url STORE_URL COMMAND ...

STORE_URL is a `[store] url` (`sqlite:///PATH` or `postgresql://USER:PASSWORD@HOST:PORT/DATABASE`). For example:
`revision --autogenerate --rev-id 0004 -m "what changes"` writes the next revision (compare it with `metadata` in
`resolvers/store.py`, edit, and keep revision ids sequential); `current`, `history`, `upgrade head` (what the gateway
does at start, under the same lock), `upgrade head --sql` (the SQL, for a DBA, without connecting).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from alembic.config import CommandLine

from resolvers.migrations import alembic_config


def main(argv: Sequence[str] | None = None) -> None:
    """Run one Alembic command on the store at `--url`."""
    prog = "python -m resolvers.migrations"
    own = argparse.ArgumentParser(prog=prog, add_help=False)
    own.add_argument("--url", help="the [store] url of the database to migrate")
    known, rest = own.parse_known_args(argv)
    cli = CommandLine(prog=f"{prog} --url STORE_URL")
    options = cli.parser.parse_args(rest)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    config = alembic_config(known.url)
    config.cmd_opts = options
    cli.run_cmd(config, options)


if __name__ == "__main__":
    main()
