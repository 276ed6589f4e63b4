"""Which role may use which route. Every route declares its roles with `@allow(...)` (or `@public`)
beside its handler; the app's guard refuses a route that declares none, so a route added without
a decision is closed to everyone (and the route-by-role test fails until it is declared)."""

from __future__ import annotations

from typing import Callable, TypeVar

from server.web.auth import ROLES

PUBLIC = "public"  # no login: only the login page itself
F = TypeVar("F", bound=Callable)


def allow(*roles: str) -> Callable[[F], F]:
    """Declare the roles that may call the decorated route handler."""
    unknown = set(roles) - set(ROLES) - {PUBLIC}
    if unknown or not roles:
        raise ValueError(f"unknown or no roles: {sorted(unknown)}")

    def declare(handler: F) -> F:
        handler.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
        return handler
    return declare


public = allow(PUBLIC)


def allowed_roles(handler: Callable | None) -> frozenset[str]:
    """The roles a route handler declared (empty when it declared none: nobody may call it)."""
    return getattr(handler, "allowed_roles", frozenset())
