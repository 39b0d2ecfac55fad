"""The HTTP API: FastAPI routes under /v1 over the same ``Service`` the CLI uses.

``app`` builds the application; ``problems`` turns every error into RFC 9457 problem details with the library's stable
``code`` (status from the one error table); ``limits`` holds the body-size limit and the per-key rate limit;
``deps`` the shared per-app state (authentication, the model lock, the time limit); ``params`` the shared
parameters; ``schemas`` every request and response shape; ``contract`` mends the OpenAPI file; ``metrics`` and
``request_ids`` the two outer middlewares; one router per resource:
``faces`` (search, verify), ``identities`` (enroll, list, show, rename, delete, templates), ``batch`` (detect,
embed, bulk enroll, batch search) and ``admin`` (health, ready, status, reindex, metrics).
"""

from idsvc.api.app import app_factory, create_app, serve
from idsvc.api.limits import BodyLimit, RateLimiter

__all__ = ["BodyLimit", "RateLimiter", "app_factory", "create_app", "serve"]
