"""Boot-time and late patching flows that drive the machine and a patcher.

* :mod:`.session`: the booted-session value (one image in one machine, one patcher)
  and how it is opened; :mod:`.harness` the harness's guest code and data layout.
* :mod:`.runner`: ``run_case(case, catalog, *, mode, patcher, schedule="rr:100",
  seed=0, timeout=None) -> Outcome`` (build, boot, patch, probe, and record what
  happened; never raises for anything the case or the patcher did) and the boot flow.
* :mod:`.late`: the late flow (payloads loaded, applied and reverted) on a booted session.
* :mod:`.patcher_checks`, :mod:`.watch`: what the harness asks of and checks around
  each patcher entry.
"""
