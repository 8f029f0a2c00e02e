"""The HTTP API of the engine (aiohttp): the seed's endpoints, JWT roles, health, OpenAPI."""

from .app import create_app
from .auth import AuthConfig, Principal, mint_token
from .state import ApiSettings, RunTarget

__all__ = ["ApiSettings", "AuthConfig", "Principal", "RunTarget", "create_app", "mint_token"]
