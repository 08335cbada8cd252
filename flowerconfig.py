"""Flower's configuration file, read by `celery flower` from the working directory.

It refuses to start Flower without real credentials: FLOWER_BASIC_AUTH must be set,
in the form user:password, and not to the placeholder compose.env ships with.  Flower
has no other gate, so a dashboard that shows every task must not come up open or
with a password printed in the repository.
"""

import os

PLACEHOLDER = "change-me"

_auth = os.environ.get("FLOWER_BASIC_AUTH", "")
_user, _, _password = _auth.partition(":")
if not _user or not _password:
    raise SystemExit("flower: FLOWER_BASIC_AUTH must be set to user:password (see compose.env)")
if PLACEHOLDER in _password:
    raise SystemExit("flower: FLOWER_BASIC_AUTH still holds the placeholder password; set a real one in compose.env")
if len(_password) < 12:
    raise SystemExit("flower: the FLOWER_BASIC_AUTH password must be at least 12 characters")
