import sys

from med42_train.cli import main

sys.exit(main())
