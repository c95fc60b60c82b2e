"""One module per subcommand, each with ``register(subparsers)``; ``run(args) -> int`` is set as the default."""

from . import estimate, gpus, models

COMMANDS = (estimate, models, gpus)
