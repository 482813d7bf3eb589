"""Whether a site's rain thresholds are calibrated, said plainly for `agent diagnose` and `agent status`.

An uncalibrated site runs the global intensity-duration curve. What that costs was measured on the
shared Cubatão catalogue (daily gauge 2000-2016, 233 landslide days in 162 events) by
``agent-export calibrate rain`` (``default_id_curve`` in its JSON; docs/rain-thresholds.md), and
tests/test_rain_notice.py recomputes these figures from the catalogue so they cannot drift.
"""

from __future__ import annotations

from typing import Any

from agent.warning.settings import WarningSettings

DEFAULT_ID_CUBATAO: dict[str, Any] = {
    "catalogue": "Cubatão (BR) daily gauge 2000-2016, 162 landslide events",
    "advisory": {"warning_days_per_year": 110.4, "false_alarm_days_per_year": 100.5, "pod": 0.71},
    "watch": {"warning_days_per_year": 68.8, "false_alarm_days_per_year": 59.9, "pod": 0.61},
}
HOW = "calibrate with `agent-export calibrate rain` on the site's own record (docs/warning-engine.md)"


def rain_calibration(settings: WarningSettings, site: str) -> dict[str, Any]:
    """``{"calibrated": bool, "message": str, ...}`` for the site (pure)."""
    cal = settings.for_site(site).rainfall.calibrated
    if cal is None or not cal.levels():
        a, w = DEFAULT_ID_CUBATAO["advisory"], DEFAULT_ID_CUBATAO["watch"]
        cat = DEFAULT_ID_CUBATAO["catalogue"]
        adv, adv_fa = a["warning_days_per_year"], a["false_alarm_days_per_year"]
        wat, wat_fa = w["warning_days_per_year"], w["false_alarm_days_per_year"]
        message = (
            f"rain thresholds are NOT calibrated for site {site}: the default global ID curve is in use. "
            f"On the {cat} it raised an advisory on {adv:g} days a year ({adv_fa:g} of them false "
            f"alarms) and a watch on {wat:g} days a year ({wat_fa:g} false); {HOW}"
        )
        return {"calibrated": False, "message": message, "default_on_shared_catalogue": DEFAULT_ID_CUBATAO}
    parts = []
    for k, rule in cal.levels():
        v = rule.validation
        fig = ""
        if v:
            fig = (
                f" (POD {v.get('pod', float('nan')):.2f}, "
                f"{v.get('false_alarm_days_per_year', float('nan')):.2f} false-alarm days/yr)"
            )
        unit = "mm" if rule.kind == "total" else "probability"
        parts.append(
            f"{('advisory', 'watch', 'warning')[k - 1]} {rule.predictor} >= {rule.threshold:.4g} {unit}{fig}"
        )
    events = f" on {cal.events} events" if cal.events is not None else ""
    message = f"rain thresholds calibrated for site {site}{events}: " + "; ".join(parts)
    return {"calibrated": True, "message": message, "source": cal.source}
