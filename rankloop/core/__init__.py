"""The pure core: what every tier agrees on, importable with numpy, scipy, choix and pydantic only.

errors, the contracts between the tiers, settings, the object-store interface, the optimizer,
the consensus engine and the one round step. Nothing here imports Flask, Celery, SQLAlchemy,
boto3 or torch (import-linter checks it in ``make lint``).
"""
