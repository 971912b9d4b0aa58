"""``python -m napari_care_losses.experiments run|report ...``"""

import sys

from .cli import main

if __name__ == "__main__":  # Dask's spawned workers re-import this module
    sys.exit(main())
