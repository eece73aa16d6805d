"""Runs the schemathesis CLI (`st`) without Hypothesis' targeted phase.

Schemathesis 4 always calls `hypothesis.target()` while fuzzing, and Hypothesis 6.170's
optimiser for that phase raises `IndexError: tuple index out of range` in about half of the runs
against this API (an error of the tool, reported as an error of an operation, never as a finding
against the API). Without `Phase.target` the same cases are generated and checked; only the
steering towards "accepted" inputs is left out. Usage: python st_without_target.py <st run arguments>.
"""

import sys

import hypothesis
from schemathesis.cli import schemathesis
from schemathesis.config._projects import ProjectConfig

_original = ProjectConfig.get_hypothesis_settings


def _without_target(self, *args, **kwargs):
    settings = _original(self, *args, **kwargs)
    phases = [phase for phase in settings.phases if phase != hypothesis.Phase.target]
    return hypothesis.settings(settings, phases=phases)


ProjectConfig.get_hypothesis_settings = _without_target

if __name__ == "__main__":
    sys.argv[0] = "st"
    sys.exit(schemathesis())
