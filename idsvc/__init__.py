"""idsvc: a self-hosted face identity service (enroll, 1:N search, 1:1 verify)."""

__version__ = "0.1.0"
