"""The longest functions of the engine, the CLI and the plugin (lines from ``def`` to the last line).

    python bench/longest_functions.py [ROOT] [--top 15] [--limit 60 --only tonno_engine]

With ``--limit`` it exits 1 when a function of ``--only`` (a package folder) is longer: the check
that no engine function grows past about a screen.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGES = ("tonno_engine", "cli", "napari_tonno")


def function_lengths(root: Path, packages=PACKAGES) -> list[tuple[int, str]]:
    """``(lines, "path:line name")`` for every function and method under ``packages`` of ``root``."""
    rows = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    rows.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(rows, key=lambda r: (-r[0], r[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=Path(__file__).resolve().parents[1], type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--only", default="tonno_engine")
    args = parser.parse_args()
    rows = function_lengths(args.root)
    print("| lines | function |\n|---:|---|")
    for lines, where in rows[: args.top]:
        print(f"| {lines} | `{where}` |")
    if args.limit is not None:
        over = [r for r in rows if r[1].startswith(args.only) and r[0] > args.limit]
        for lines, where in over:
            print(f"over {args.limit}: {lines} {where}", file=sys.stderr)
        return 1 if over else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
