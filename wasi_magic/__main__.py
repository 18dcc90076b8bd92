"""``python -m wasi_magic run|build|inspect|cache ...``"""

import sys

from .cli import main

sys.exit(main())
