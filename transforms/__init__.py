"""Steps of kav-pipeline, one composite transform per module.

Importing the package installs the filesystem fixes of `pipeline.storage`
in every process that runs these steps, Beam's worker processes included.
"""

from pipeline.storage import install_filesystem_fixes

install_filesystem_fixes()
