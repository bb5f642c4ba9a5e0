"""``fogwire router``: the skupper-router wrapper (supervise skrouterd, hot-reload its config).

Light on purpose: the command lives in :mod:`fogwire_router.command`, the work in
:mod:`fogwire_router.supervisor`; nothing heavy is imported until the command runs.
"""
