"""Boot-time and late patching flows that drive the machine and a patcher.

Public entry points (implemented in :mod:`pytest_altpatch.scenarios.runner`):

* ``run_case(case, catalog, *, mode, patcher, schedule="rr:100", seed=0,
  timeout=None) -> Outcome``: build, boot, patch, probe, and record what happened;
  never raises for anything the case or the patcher did (those become the outcome's
  error or findings).
* ``not_applicable(case, patcher, mode) -> str | None``: why a case cannot run
  against a patcher (a required feature it does not declare, a dialect it does not
  implement, a mode the case has no expectations for), or None.
* ``parse_schedules(text) -> tuple[ScheduleChoice, ...]``: ``pct:0-1,rr:100,random:1-3,
  adversarial`` -> one (name, seed) per schedule to run; the default is
  :data:`.default_schedule.DEFAULT_SCHEDULES`.
"""
