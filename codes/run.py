"""The reference's entry point, kept so that its command lines work verbatim:

    python -u codes/run.py --do_train --do_valid --data_path data/wn18rr --model TransE -n 256 ... -if_Mutup 0.3

It is a thin shim over ``emukg legacy`` (see ``src/emukg/commands/legacy.py``).
"""

import sys

from emukg.commands.legacy import run_legacy

if __name__ == "__main__":
    sys.exit(run_legacy(sys.argv[1:], prog="codes/run.py"))
