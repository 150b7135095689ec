"""VideoReader and read_clips (placeholder until the Rust clip pipeline lands)."""


class VideoReader:  # replaced by the clip pipeline work
    def __init__(self, *a, **k):
        raise NotImplementedError("VideoReader is being built")


def read_clips(*a, **k):
    raise NotImplementedError("read_clips is being built")
