"""gunicorn settings for a checkout: the packaged ones (``rankloop/commands/gunicorn_conf.py``),
which ``rankloop serve`` reads by default and the image and cluster manifest name as
``gunicorn -c python:rankloop.commands.gunicorn_conf``. One config; edit it there.

    gunicorn -c infra/gunicorn.conf.py 'rankloop.commands.web:create_web_app()'
"""

from rankloop.commands.gunicorn_conf import *  # noqa: F403
