"""The web app: the public check page, the admin pages, the JSON API (FastAPI, Jinja2)."""

from rdnsgate.frontends.web.app import EmbeddedServer, WebService, create_app

__all__ = ["EmbeddedServer", "WebService", "create_app"]
