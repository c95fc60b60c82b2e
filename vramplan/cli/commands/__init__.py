"""One module per subcommand, each with ``register(subparsers)``; ``run(args) -> int`` is set as the default."""

from . import calibrate, doctor, emit, estimate, gpus, models, plan, probe, report, serve

COMMANDS = (estimate, plan, emit, models, gpus, doctor, serve, report, probe, calibrate)
