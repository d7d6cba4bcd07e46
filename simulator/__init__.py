"""Race simulator: a vectorised full-field race model producing raw telemetry.

Pure cores (no asyncio, no clock): :mod:`simulator.track`, :mod:`simulator.model`
and :mod:`simulator.control` (the race), :mod:`simulator.sensors` (channels),
:mod:`simulator.kernel` (chunks of quantised samples and events),
:mod:`simulator.faults`, :mod:`simulator.recording` (the recording codec),
:mod:`simulator.summary`.  Adapters: :class:`simulator.service.SimulatorService`,
:class:`simulator.replay.ReplayService` and the recording files
(:mod:`simulator.recording_file`).  Errors: see :mod:`simulator.errors`.
"""
