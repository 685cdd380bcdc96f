"""``tonno methods``: the method registry, as the other commands and the widgets see it."""

from __future__ import annotations

import typer


def methods(as_json: bool = typer.Option(False, "--json", help="Print the records as JSON.")) -> None:
    """List every registered heatmap method and CAM: name, kind, what it needs, default L (directions), equation."""
    import json

    from rich.console import Console
    from rich.table import Table

    from tonno_engine.base.registry import CAMS, METHODS

    if as_json:
        print(json.dumps({"methods": [r.as_dict() for r in METHODS.values()],
                          "cams": [{"name": c.name, "title": c.title, "reference": c.reference}
                                   for c in CAMS.values()]}, indent=2))
        return
    table = Table("name", "kind", "needs", "default L", "title", "equation", title="heatmap methods")
    for r in METHODS.values():
        table.add_row(r.name, r.kind, r.needs, str(r.default_directions or "-"), r.title, r.equation)
    Console(width=200).print(table)
    print("CAMs: " + ", ".join(f"{c.name} ({c.title}, {c.reference})" for c in CAMS.values()))
