"""The ``tonno`` command line (installed as ``tonno_cli``): thin Typer commands over the engine."""
