from __future__ import annotations

import sys

from agehpo.cli import main

sys.exit(main())
