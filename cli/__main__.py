"""``python -m tonno_cli`` (and ``torchrun -m tonno_cli``): the ``tonno`` command."""

from .app import main

main()
