import sys

from bench.study.cli import main

sys.exit(main())
