"""``python -m ivr.web``: the console process ``ivr serve`` starts beside itself (ivr.web.app.main)."""

import sys

from ivr.web.app import main

sys.exit(main())
