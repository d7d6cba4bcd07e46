"""Race simulator: a vectorised full-field race model producing raw telemetry.

Pure cores (no asyncio, no clock): :mod:`simulator.track`, :mod:`simulator.model`
and :mod:`simulator.control` (the race), :mod:`simulator.sensors` (channels),
:mod:`simulator.kernel` (chunks of quantised samples and events),
:mod:`simulator.faults`, :mod:`simulator.recording`, :mod:`simulator.summary`.
Adapters: :class:`simulator.service.SimulatorService` and
:class:`simulator.replay.ReplayService`.  Errors: see :mod:`simulator.errors`.
"""
