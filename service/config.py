"""The coordinator's settings, typed: one :class:`~rankloop.core.settings.Settings` per app.

``create_app`` builds it (``RANKLOOP_*`` variables over the defaults, then its overrides) and
keeps it in ``app.extensions``; every module reads fields of it (``app_settings().base_url``),
never the Flask config by key. Tests that change a setting after the app is made set the field
(``settings_of(app).render_slots_per_owner = 1``).
"""

from __future__ import annotations

from flask import current_app

from rankloop.core import mturk
from rankloop.core.settings import Settings, settings_of


def app_settings() -> Settings:
    """The settings of the app handling this request (or of the pushed app context)."""
    return settings_of(current_app)


def mturk_stand_in() -> str | None:
    """The test stand-in for MTurk's origin, only while the app is testing (Flask's TESTING)."""
    return mturk.stand_in_origin(app_settings().mturk_test_origin, current_app.testing)


__all__ = ["Settings", "app_settings", "mturk_stand_in", "settings_of"]
