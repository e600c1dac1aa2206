"""Shipped kernel images: run a real kernel's own patcher in the emulated machine.

A *target profile* (:mod:`.profile`, data files in ``profiles/``) says what one family
of kernel builds needs from the harness; :mod:`.layout` maps the linked image at its
link address; :mod:`.runner` runs its boot-time patching on every CPU and observes what
it did; :mod:`.oracle` holds the reference dialect against it; :mod:`.debian` fetches
the image from Debian's archive into a cache outside the repository.
"""
