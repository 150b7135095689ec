"""Clip samplers (placeholder until the loader work lands)."""


def random_clip(*a, **k):
    raise NotImplementedError


def uniform_clips(*a, **k):
    raise NotImplementedError


def center_clip(*a, **k):
    raise NotImplementedError


def dense_clips(*a, **k):
    raise NotImplementedError
