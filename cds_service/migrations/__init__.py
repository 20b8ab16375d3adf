"""Alembic revisions of the store's schema (README.md here; run by cds_service/schema.py)."""
