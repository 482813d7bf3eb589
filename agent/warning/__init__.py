"""The warning engine: per-source rules, disagreement, the alert state machine (docs/warning-engine.md).

Entry point for the daemon: ``agent.warning.engine.WarningEngine(settings, site).evaluate(snapshot, now)``.
Modules: inputs (snapshot types), levels (Level, SourceLevel, grading), settings ([warning] section),
rules (wire, forecast, seismic, spatial), kinematics (velocity, Fukuzono inverse velocity), rainfall
(ID threshold, rain events/summary), disagreement, events (lifecycle events, explanations), state
(persistent JSON state), engine. The Landslide Risk Index lives in ``agent.features.lsi``.
"""
