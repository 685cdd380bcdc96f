"""``tonno synth``: write synthetic weak-label data (volumes, masks, labels.csv)."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app
from .options import QuietOpt, fail


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Output folder (must be empty or new)."),
    kind: str = typer.Option("phantom", help="phantom or brain."),
    n: int = typer.Option(40, "--n", help="Number of cases (half positive)."),
    seed: int = typer.Option(0, help="Random seed."),
    shape: str = typer.Option("", help="Volume shape as D,H,W (default 64,64,64 phantom; 64,76,64 brain)."),
    max_lesions: int = typer.Option(3, help="Positive cases hold 1 to this many lesions."),
    overwrite: bool = typer.Option(False, help="Write into a non-empty folder."),
    quiet: QuietOpt = False,
) -> None:
    """Write synthetic weak-label volumes, lesion masks and labels.csv (the project's benchmark data)."""
    from tonno_engine.synth import synthesize

    from .progress import show_progress

    if out.exists() and any(out.iterdir()) and not overwrite:
        fail(f"{out}: folder is not empty (use --overwrite)")
    try:
        dims = tuple(int(k) for k in shape.replace("x", ",").split(",")) if shape else None
    except ValueError:
        raise typer.BadParameter(f"shape must look like 64,64,64, got {shape!r}", param_hint="--shape") from None
    try:
        events = synthesize(out, kind=kind, n=n, seed=seed, shape=dims, max_lesions=max_lesions)
        for _ in show_progress(events, f"synth {kind}", quiet=quiet):
            pass
    except ValueError as exc:
        fail(str(exc))
    print(f"wrote {n} {kind} cases to {out} (labels: {out / 'labels.csv'})")
