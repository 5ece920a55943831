"""``python -m mmrobust`` (and ``torchrun -m mmrobust``): the command line."""
from .cli import main

raise SystemExit(main())
