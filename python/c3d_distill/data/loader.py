"""ClipLoader (placeholder until the loader work lands)."""


class ClipLoader:
    def __init__(self, *a, **k):
        raise NotImplementedError("ClipLoader is being built")
