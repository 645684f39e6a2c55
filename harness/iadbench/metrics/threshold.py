"""The threshold rules, kept importable here for plugins written against this module;
they live in ``iadbench.calibration.rules``."""

from iadbench.calibration.rules import (  # noqa: F401
    DEFAULT_RULE,
    RULE_FORMS,
    ThresholdRule,
    UndefinedThreshold,
    calibrate,
    describe_rule,
    fit_threshold,
    parse_rule,
)
