"""The web app: the public check page, the admin pages, the JSON API (FastAPI, Jinja2)."""

from rdnsgate.frontends.web.app import EmbeddedServer, create_app

__all__ = ["EmbeddedServer", "create_app"]
