"""`python -m dlcli.config.catalog`: regenerate keras_catalog.json."""

import sys

from dlcli.config.catalog.generate import main

sys.exit(main())
