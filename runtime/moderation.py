"""Moderation endpoints (filled in below)."""
ROUTES: dict = {}
