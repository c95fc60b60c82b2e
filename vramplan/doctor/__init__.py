"""``vramplan doctor``: explain why an existing DeepSpeed config + launch script runs out of memory, and fix it.

Public API: ``run_doctor`` (script or command line -> ``DoctorReport``), ``build_context`` + ``diagnose``
for callers that already hold a ``LaunchSpec``, ``ALL_RULES`` (every rule with its evidence), and
``write_fix_files`` (corrected copies of the DeepSpeed JSON and the script). Rules, prescriptions and
alternatives are pure functions of a ``DoctorContext``; only ``fixfiles.write_fix_files`` writes.
"""

from .diagnose import DoctorReport, build_context, diagnose, run_doctor
from .fixfiles import fix_file_texts, write_fix_files
from .prescribe import Option, Prescription
from .rules import ALL_RULES, rule_by_id, run_rules
from .types import Change, DoctorContext, Finding, Fix, Rule, Severity

__all__ = [
    "ALL_RULES",
    "Change",
    "DoctorContext",
    "DoctorReport",
    "Finding",
    "Fix",
    "Option",
    "Prescription",
    "Rule",
    "Severity",
    "build_context",
    "diagnose",
    "rule_by_id",
    "run_doctor",
    "run_rules",
    "fix_file_texts",
    "write_fix_files",
]
