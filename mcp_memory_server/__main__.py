"""python -m mcp_memory_server"""

import sys

from .cli import main

sys.exit(main())
