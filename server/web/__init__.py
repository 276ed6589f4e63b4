"""The clinic dashboard: FastAPI + Jinja2 pages, SVG charts, exports and a JSON API."""

from server.web.app import create_app

__all__ = ["create_app"]
