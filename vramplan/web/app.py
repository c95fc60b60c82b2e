"""The Flask application of ``vramplan serve``: routes only (checks in ``forms``, work in ``service``).

Routes: ``GET /`` (the page), ``GET /static/*`` (its JS and CSS, served locally: no CDN), ``GET /api/options``,
``POST /api/{estimate,plan,emit,doctor}`` (a JSON object of form fields in, JSON out). Errors come back as
``{"error": message}``: 400 for a ``VramplanError`` (its message, as the CLI would print it), 413 for a
body over the size cap, 415 for a body that is not JSON, 500 with a generic message otherwise.
Requests must name this machine in their Host header (``TRUSTED_HOSTS``), so a page on another site
cannot reach the server through DNS rebinding; POSTs must be JSON, which a cross-site form cannot send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import VramplanError
from .forms import MAX_CONTENT_BYTES, Form, parse_form

STATIC = Path(__file__).with_name("static")
LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def create_app(trusted_hosts: list[str] | None = None, check_host: bool = True) -> Any:
    """A new Flask app. ``trusted_hosts``: Host header names accepted (default: loopback names only);
    ``check_host=False`` accepts any (for ``serve --host`` on a non-loopback address)."""
    try:
        from flask import Flask, jsonify, request, send_from_directory
    except ImportError as exc:
        raise VramplanError('the web page needs flask, which is not installed; run: pip install "vramplan[web]"') from exc
    from werkzeug.exceptions import HTTPException

    from . import service

    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=MAX_CONTENT_BYTES,
                      TRUSTED_HOSTS=(trusted_hosts or LOCAL_HOSTS) if check_host else None)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.after_request
    def _headers(resp: Any) -> Any:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(VramplanError)
    def _user_error(exc: VramplanError) -> Any:
        return jsonify(error=str(exc)), 400

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        messages = {413: f"the request is larger than {MAX_CONTENT_BYTES // (1024 * 1024)} MiB; upload a smaller "
                         "config.json or paste a shorter script",
                    415: "send the form as JSON (Content-Type: application/json)"}
        return jsonify(error=messages.get(exc.code or 500, exc.description or exc.name)), exc.code or 500

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Any:
        logging.getLogger("vramplan.web").exception("internal error")
        return jsonify(error=f"internal error ({type(exc).__name__}); the server log has the details"), 500

    @app.get("/")
    def index() -> Any:
        return send_from_directory(STATIC, "index.html")

    @app.get("/favicon.ico")
    def favicon() -> Any:
        return "", 204

    @app.get("/api/options")
    def options() -> Any:
        return jsonify(service.options())

    def _form() -> Form:
        if not request.is_json:
            from werkzeug.exceptions import UnsupportedMediaType

            raise UnsupportedMediaType()
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            raise VramplanError("the request body is nested too deeply") from None
        if body is None:
            raise VramplanError("the request body is not valid JSON")
        return parse_form(body)

    def _post(name: str, view: Callable[[Form], dict[str, Any]]) -> None:
        app.add_url_rule(f"/api/{name}", f"api_{name}", lambda: jsonify(view(_form())), methods=["POST"])

    _post("estimate", service.estimate_view)
    _post("plan", service.plan_view)
    _post("emit", service.emit_view)
    _post("doctor", service.doctor_view)
    return app
