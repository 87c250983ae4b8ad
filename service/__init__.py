"""The coordinator: campaigns, rounds, annotators' tasks and rankings, in a database.

The data path, one module per job:

- :mod:`service.lifecycle`: the owner's controls (start, pause, resume, stop);
- :mod:`service.rendering`: the render hand-off: a new round row, the render's result (or
  failure), and :func:`~service.rendering.run_step`, which commits a step and only then sends
  the render messages it made (:mod:`service.render_sending`); a render's message
  (:mod:`service.render_messages`), its owner's render slots (:mod:`service.render_slots`,
  :mod:`service.preview_renders`), the order of the renders waiting for one
  (:mod:`service.render_queue`) and its heartbeat (:mod:`service.render_heartbeats`);
- :mod:`service.leasing`: the next task for an annotator, with the statements it runs built once
  in :mod:`service.lease_statements`;
- :mod:`service.submission`: a ranking stored, the reference path (ORM, every check spelt out);
  :mod:`service.fast_submission`: the same on the annotator's hot path (Core statements, one
  statement on PostgreSQL); :mod:`service.ranking_rules`: the pure rules both apply;
- :mod:`service.closing`: a round closed on its quorum or deadline, its consensus, the next
  round; :mod:`service.sweep`: the sweeper (deadlines, lost closes, lost renders);
- :mod:`service.statements`: each rule of a task's life written once as SQLAlchemy Core (a
  running lease, a round's quorum, a ranking counted), for every path that runs it;
  :mod:`service.crediting`: an annotator credited with a ranking, and the completion code;
- :mod:`service.transitions`: what every step uses (the campaign lock, compare-and-set on a
  round, the audit log); :mod:`service.caches` and :mod:`service.driver`: the hot path's
  per-process caches and its driver-level execution; :mod:`service.tasks`: the Celery
  bookkeeping jobs; :mod:`service.jobs`: every Celery job sent, by name (the bottom of the
  ranking's way: views and jobs -> steps -> rendering -> jobs);
- :mod:`service.statements`: each rule of a ranking stored and a lease taken, once, as Core
  statements that both submission paths and both leasing paths build from;
- :mod:`service.config`: the app's one typed :class:`~rankloop.core.settings.Settings`;
- :mod:`service.routing`: the ``operation`` decorator that routes a view and declares its
  contract, from which the OpenAPI document is built.

Glossary (one concept, one name; database columns and API fields keep their names):

task
    What an annotator is given: one round to rank, held under a *lease* until ``expires_at``.
    A row of the ``assignments`` table (model :class:`~service.models.Assignment`), called
    ``task_id`` in the API. Its statuses are ``contracts.TaskStatus``.
Celery job
    A message on the broker (the render job on the ``gpu`` queue, the bookkeeping jobs on the
    ``coord`` queue); Celery calls them tasks, :mod:`service.tasks` (Flask's name for that
    module) holds them. Their names live in :mod:`rankloop.core.contracts`.
position
    An image's item number in its round's consensus (0..n-1 over every image shown, the
    attention image included). Rankings and consensus orders hold positions.
index
    The render worker's number of an image; for a candidate, the optimizer's index into its
    proposal. The optimizer is told indices (:class:`~rankloop.core.contracts.ConsensusFeed`).
winner
    The candidate the round's consensus put first
    (:func:`service.closing.winner_image`).
current best
    The optimizer's own current point, rendered clean with each round and never shown to
    annotators (``Round.best_key``).
step
    One unit of work on a session: it commits (or rolls back) before it returns an
    :class:`~service.rendering.Outcome`, whose render messages go out after that commit.
"""
