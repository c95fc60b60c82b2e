"""``vramplan serve``: the local web page (extra ``web``), bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  vramplan serve                      http://127.0.0.1:8765/
  vramplan serve --port 9000
The page calls vramplan's own API on this machine: nothing is fetched from the network, no file on the
server is read on the page's behalf, and uploads are capped (2 MiB per request).
"""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``serve`` subcommand."""
    p = sub.add_parser("serve", help="local web page: estimate, plans, charts, downloads, doctor",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the app and serve it until interrupted."""
    from werkzeug.serving import make_server

    from ...core.errors import VramplanError
    from ...web import create_app

    if not 0 <= args.port <= 65535:
        raise VramplanError(f"--port {args.port}: must be 0-65535")
    loopback = args.host in LOOPBACK
    if not loopback:
        sys.stderr.write(f"vramplan: warning: serving on {args.host}: anyone who can reach this address can use the page\n")
    app = create_app(check_host=loopback)
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as exc:
        raise VramplanError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); try another --port") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    sys.stderr.write(f"vramplan: serving on http://{host}:{server.server_port}/ (Ctrl+C stops)\n")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
