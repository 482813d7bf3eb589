"""The check table: fixed checks as data, plus per-port checks generated from templates by port kind."""

from __future__ import annotations

from collections.abc import Callable

from agent.diagnose import (
    checks_broker,
    checks_bundle,
    checks_config,
    checks_outbox,
    checks_selftest,
    checks_sensors,
    checks_system,
)
from agent.diagnose.checks_serial import port_result
from agent.diagnose.model import Check, Context, Options, Result
from agent.sensors.settings import SerialPortConfig

# (name, function, timeout s): order is the order of the report.
FIXED_HEAD: tuple[tuple[str, Callable[[Context], Result], float], ...] = (
    ("config", checks_config.config, 2.0),
    ("daemon", checks_config.daemon, 2.0),
    ("warning.rain_thresholds", checks_config.rain_thresholds, 2.0),
)
FIXED_TAIL: tuple[tuple[str, Callable[[Context], Result], float], ...] = (
    ("bundle.trust", checks_bundle.trust, 10.0),
    ("bundle.integrity", checks_bundle.integrity, 60.0),
    ("bundle.golden", checks_bundle.golden, 60.0),
    ("bundle.engine", checks_bundle.engine, 60.0),
    ("inference.backend", checks_bundle.backend, 90.0),
    ("inference.warmup", checks_bundle.warmup, 90.0),
    ("broker.connect", checks_broker.connect, 15.0),
    ("broker.roundtrip", checks_broker.publish_subscribe, 15.0),
    ("broker.tls_expiry", checks_broker.tls_expiry, 15.0),
    ("outbox.depth", checks_outbox.depth, 10.0),
    ("outbox.oldest", checks_outbox.oldest, 10.0),
    ("system.disk", checks_system.disk, 5.0),
    ("system.clock", checks_system.clock, 5.0),
    ("system.temperature", checks_system.temperature, 5.0),
    ("system.power_mode", checks_system.power_mode, 5.0),
)
PortFn = Callable[[Context, SerialPortConfig], Result]
# (name template, function, port kind): "{port}" is the configured port name.
PORT_CHECKS: tuple[tuple[str, PortFn, str], ...] = (
    ("serial.{port}", port_result, "*"),
    ("gnss.{port}.fix", checks_sensors.gnss_fix, "gnss"),
    ("gnss.{port}.satellites", checks_sensors.gnss_satellites, "gnss"),
    ("gnss.{port}.accuracy", checks_sensors.gnss_accuracy, "gnss"),
    ("gnss.{port}.fix_age", checks_sensors.gnss_fix_age, "gnss"),
    ("rain.{port}.counter", checks_sensors.rain_counter, "bridge"),
    ("seismic.{port}", checks_sensors.seismic_rate_noise, "bridge"),
    ("wire.{port}.loop", checks_sensors.wire_loop, "bridge"),
)


def _bind(fn: PortFn, port: SerialPortConfig) -> Callable[[Context], Result]:
    return lambda ctx: fn(ctx, port)


def build_checks(ctx: Context, options: Options | None = None) -> list[Check]:
    opts = options or ctx.options
    port_timeout = opts.listen_s + 10.0
    checks = [Check(n, fn, t) for n, fn, t in FIXED_HEAD]
    for port in ctx.cfg.sensors.enabled_ports():
        for template, fn, kind in PORT_CHECKS:
            if kind in ("*", port.kind):
                checks.append(Check(template.format(port=port.name), _bind(fn, port), port_timeout))
    checks.extend(Check(n, fn, t) for n, fn, t in FIXED_TAIL)
    if opts.selftest:  # opt-in (`agent diagnose --selftest`): it loads the models and times them
        checks.append(Check("inference.selftest", checks_selftest.selftest, 600.0))
    return checks
