"""``or1-plugins``: every registered plugin, its package and version, and what it provides."""

from __future__ import annotations

from collections import defaultdict

from or1.cli.common import guarded
from or1.plugins import REGISTRATION_HOOKS, get_registry


@guarded
def main() -> None:
    from rich.console import Console
    from rich.table import Table

    registry = get_registry()
    provides: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for group in REGISTRATION_HOOKS:
        for name, comp in sorted(registry.components[group].items()):
            p = comp.plugin
            provides[(p.package, p.version, p.name)].append(f"{group}={name}")
    table = Table(title="or1 plugins")
    for column in ("package", "version", "plugin", "provides (config group=name)"):
        table.add_column(column)
    for (package, version, plugin), items in sorted(provides.items(), key=lambda kv: (kv[0][0] != "or1", kv[0])):
        table.add_row(package, version, plugin, ", ".join(items))
    console = Console()
    console.print(table)
    for group in REGISTRATION_HOOKS:
        names = ", ".join(sorted(registry.components[group])) or "(none)"
        console.print(f"[bold]{group}[/bold] ({REGISTRATION_HOOKS[group]}): {names}")
    for problem in registry.problems:
        console.print(f"[red]problem:[/red] {problem}")


if __name__ == "__main__":
    main()
