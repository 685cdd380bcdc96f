"""``python -m tonno_cli`` (and ``torchrun -m tonno_cli``): the ``tonno`` command."""

from tonno_cli.app import main

main()
