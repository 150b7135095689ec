"""c3d-distill: fast video networks distilled from C3D, fed by a Rust clip loader.

Packages, each importing only those before it (imported on demand, so `import c3d_distill` stays light):
  clips     decode, sample and stack clips (Rust: ``c3d_distill._native``), the ClipLoader
  datasets  UCF101 / HMDB51 / list files / the synthetic action set
  models    the C3D teacher and the SP / MC students
  runs      run folders, checkpoints, a run's network and clip settings
  transfer  initialise a student from the teacher's weights
  train     training and distillation
  evaluate, report, demo, cli   what the command line runs
"""

from ._lazy import lazy_attributes
from ._native import VideoDecodeError
from ._native import __version__ as __version__

__all__ = ["VideoDecodeError", "__version__", "load_model"]

# load_model imports torch: resolved on first use, so `import c3d_distill` stays light.
__getattr__ = lazy_attributes(__name__, {"load_model": ".runs.source"})
