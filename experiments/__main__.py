"""``python -m experiments``: the optimizer studies, from a checkout of the repository.

python -m experiments --budget quick --out runs/report
python -m experiments --budget quick --studies landscapes --out runs/landscape
"""

import sys

from experiments.run_all import main

sys.exit(main())
