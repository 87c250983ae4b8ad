"""Push at crowd scale: pages are told the moment work exists, through one notification channel
(:mod:`service.notify`: PostgreSQL ``NOTIFY`` sent with the commit; SQLite's
``data_version``), fanned out by a small asyncio process (``rankloop streams``:
:mod:`service.push.server`, :mod:`service.push.hub`) that holds thousands of idle server-sent
event streams as a few kilobytes each. The web tier's own stream routes
(:mod:`service.api.stream`) remain, polling, for a deployment without that process; the pages
poll when no stream opens at all.
"""
