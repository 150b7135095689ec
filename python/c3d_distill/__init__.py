"""c3d-distill: fast video networks distilled from C3D, fed by a Rust clip loader.

Submodules (imported on demand, so `import c3d_distill` stays light):
  data      decode, sample and stack clips (Rust: ``c3d_distill._clips``)
  datasets  UCF101 / HMDB51 / list files / the synthetic action set
  models    the C3D teacher and the SP / MC students
  transfer  initialise a student from the teacher's weights
  train     training, distillation, evaluation, reports
"""

from ._clips import VideoDecodeError

__version__ = "0.1.0"

__all__ = ["VideoDecodeError", "__version__"]
