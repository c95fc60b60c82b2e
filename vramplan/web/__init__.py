"""Optional local web page (extra ``web``): ``create_app()`` builds the Flask app ``vramplan serve`` runs.

Calls the public API (``vramplan.api``, ``vramplan.doctor``) and the public report functions only.
"""

from .app import create_app

__all__ = ["create_app"]
