"""Offline analysis of confidence signals: calibration metrics and reliability diagrams."""

from rlsf_verl.analysis.calibration import (
    CalibrationReport,
    ReliabilityBin,
    auroc,
    brier_score,
    calibration_report,
    expected_calibration_error,
    reliability_diagram,
)

__all__ = [
    "CalibrationReport",
    "ReliabilityBin",
    "auroc",
    "brier_score",
    "calibration_report",
    "expected_calibration_error",
    "reliability_diagram",
]
