"""The composition layer: the only code that imports several stages.

* :mod:`slipstream.app.cli`: the ``slipstream`` command, which gathers every
  stage's commands.
* :mod:`slipstream.app.run`: ``slipstream run``, every stage in one process.
* :mod:`slipstream.app.cluster`: nginx in front of broadcast nodes, and the
  local multi-process deployment (``slipstream run --nodes N``).
* :mod:`slipstream.app.bench`: the end-to-end benchmark harnesses (fan-out,
  codecs), which drive several stages.

Below it sit the stages (``simulator``, ``ingest``, ``downsample``,
``broadcast``), and below them the shared core (the rest of ``slipstream``);
docs/architecture.md draws the layers and ``lint-imports`` checks them.
"""
