"""``or1-plugins``'s work: what every registered plugin provides, as a dict and as text
(``or1/cli/plugins.py`` parses the arguments)."""

from __future__ import annotations

import inspect
from typing import Any

from or1.core import config_packages, hook_points, hookspecs
from or1.core.registry import BUILTIN_PACKAGE, get_plugin_manager, get_registry


def hook_names() -> list[str]:
    """Every hook in :mod:`or1.core.hookspecs`, in definition order (``or1_register`` first)."""
    names = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("or1_")
    ]
    return sorted(names, key=lambda n: inspect.getsourcelines(getattr(hookspecs, n))[1])


def describe() -> dict[str, Any]:
    """What ``or1-plugins`` prints, as plain data."""
    pm = get_plugin_manager()
    registry = get_registry()

    plugins: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(info: Any) -> dict[str, Any]:
        key = (info.package, info.name)
        if key not in plugins:
            plugins[key] = {
                "plugin": info.name,
                "package": info.package,
                "version": info.version,
                "module": info.module,
                "hooks": [],
                "components": {},
            }
        return plugins[key]

    hooks: list[dict[str, Any]] = []
    for name in hook_names():
        implemented_by = []
        for impl in getattr(pm.hook, name).get_hookimpls():
            info = pm.info(impl.plugin)
            entry(info)["hooks"].append(name)
            implemented_by.append(f"{info.package}:{info.name}")
        hooks.append({"hook": name, "implemented_by": implemented_by})
    points = []
    for hp in hook_points.HOOK_POINTS:
        components = registry.components[hp.group]
        points.append(
            {
                "group": hp.group,
                "interface": hp.interface.__name__ if hp.interface else None,
                "components": {n: components[n].plugin.package for n in sorted(components)},
            }
        )
    for group, components in registry.components.items():
        for cname in sorted(components):
            entry(components[cname].plugin)["components"].setdefault(group, []).append(cname)

    packages: dict[str, dict[str, Any]] = {}
    for (package, _), p in sorted(
        plugins.items(), key=lambda kv: (kv[0][0] != BUILTIN_PACKAGE, kv[0])
    ):
        pkg = packages.setdefault(
            package, {"package": package, "version": p["version"], "plugins": [], "config": []}
        )
        pkg["plugins"].append(p)
    for cp in config_packages.config_packages():
        pkg = packages.setdefault(
            cp.package, {"package": cp.package, "version": cp.version, "plugins": [], "config": []}
        )
        pkg["config"].append(
            {"module": cp.module, "search_path": cp.search_path, "files": cp.presets()}
        )
    return {
        "packages": list(packages.values()),
        "hooks": hooks,
        "hook_points": points,
        "problems": list(registry.problems),
    }


def render(info: dict[str, Any]) -> str:
    out = [
        f"or1 plugins (entry-point group '{hookspecs.PROJECT}'; "
        f"config files: entry-point group '{config_packages.ENTRY_POINT_GROUP}')",
    ]
    for pkg in info["packages"]:
        out += ["", f"{pkg['package']} {pkg['version']}"]
        for p in pkg["plugins"]:
            out.append(f"  plugin {p['plugin']} ({p['module'] or '?'})")
            out.append(f"    hooks: {', '.join(p['hooks']) or '(none)'}")
            for group, names in sorted(p["components"].items()):
                out.append(f"    {group}: {', '.join(names)}")
        for c in pkg["config"]:
            out.append(f"  config files ({c['search_path']})")
            for group, names in c["files"].items():
                out.append(f"    {group}: {', '.join(names)}")
    out += ["", "hooks"]
    for h in info["hooks"]:
        impls = ", ".join(h["implemented_by"]) or "(no plugin implements it)"
        out.append(f"  {h['hook']}: {impls}")
    out += ["", "hook points"]
    for h in info["hook_points"]:
        comps = ", ".join(f"{n} ({pkg})" for n, pkg in h["components"].items()) or "(none)"
        out.append(f"  {h['group']} ({h['interface'] or 'a function'}): {comps}")
    if info["problems"]:
        out += ["", "problems"]
        out += [f"  {p}" for p in info["problems"]]
    return "\n".join(out)
