"""``or1-plugins``: every registered plugin, its package and version, and what it provides.

    or1-plugins            # per package: plugins, the hooks they implement, the components
                           # (config group=name) and config files they provide; then every
                           # hook with its implementations, every hook point with its
                           # components; then any plugin problems
    or1-plugins --json     # the same as one JSON object

Like ``pytest --trace-config`` or ``llm plugins``: the way to check that an installed package was
found. A plugin that failed to load or register is listed under ``problems`` (naming its
package) and the command still succeeds; two packages claiming one component name is an error.
"""

from __future__ import annotations

import argparse
import json

from or1.cli.common import guarded
from or1.commands.list_plugins import describe, render


@guarded
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="or1-plugins", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    info = describe()
    print(json.dumps(info, indent=1) if args.json else render(info))


if __name__ == "__main__":
    main()
