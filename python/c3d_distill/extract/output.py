"""The output folder of an extraction: where each array goes, the manifest (one part per rank under
torchrun), what a rerun may skip, the merge at the end and the HDF5 file assembled from the arrays.

Every array is written under a temporary name, synced and renamed; its manifest line is appended (and
synced) only after, so a kill at any moment leaves finished videos finished and no torn array."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed

MANIFEST = "manifest.jsonl"
H5_NAME = "features.h5"
PARTS = ".parts"  # h5 runs: finished arrays wait here as .npy until features.h5 is assembled
LAYERS = ("pool5", "fc6", "fc7", "logits")


class ExtractError(ValueError):
    """Settings or an output folder that cannot be used."""


@dataclass
class Video:
    path: str
    rel: str  # the name under the output folder, without extension

    frames: int = 0
    fps: float = 0.0
    starts: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    clips: list[list[int]] = field(default_factory=list)


def _fsync_append(path: Path, line: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_manifest(path: Path) -> tuple[dict | None, dict[str, dict]]:
    """The header and the last line per video; a torn last line (a kill mid-write) is ignored."""
    header, rows = None, {}
    if not path.exists():
        return None, rows
    for line in path.read_text().splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if d.get("header"):
            header = header or d
        elif "video" in d:
            rows[d["video"]] = d
    return header, rows


def _save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Output:
    """The output folder: where each array goes, the manifest (parts under torchrun), resume and merge."""

    def __init__(self, out: Path, header: dict[str, Any], fmt: str, layers: list[str], rank: int, world: int):
        self.out, self.header, self.fmt, self.layers, self.rank, self.world = out, header, fmt, layers, rank, world
        self.manifest = out / MANIFEST
        self.part = out / f"{MANIFEST}.rank{rank}" if world > 1 else self.manifest

    def array_path(self, rel: str, layer: str) -> Path:
        suffix = f".{layer}.npy" if len(self.layers) > 1 else ".npy"
        base = self.out / PARTS if self.fmt == "h5" else self.out
        return base / (rel + suffix)

    def all_rows(self) -> tuple[list[dict], dict[str, dict]]:
        headers, rows = [], {}
        for p in sorted(self.out.glob(f"{MANIFEST}*")):
            h, r = read_manifest(p)
            if h is not None:
                headers.append(h)
            rows.update(r)
        return headers, rows

    def open(self, overwrite: bool) -> dict[str, dict]:
        """Check the folder against this run's settings; returns the videos already done (status ok)."""
        headers, rows = self.all_rows()
        def settings(h: dict) -> dict:  # what decides the arrays (not how many ranks made them)
            return {k: v for k, v in h.items() if k not in ("header", "world_size")}

        mine = settings(self.header)
        other = [settings(h) for h in headers if settings(h) != mine]
        if other and not overwrite:
            old = other[0]
            diffs = [f"{k}: {old.get(k)!r} → {mine.get(k)!r}" for k in sorted(set(old) | set(mine))
                     if old.get(k) != mine.get(k)]
            raise ExtractError(f"--out {self.out}: holds features made with other settings ({'; '.join(diffs)}); "
                               "pass --overwrite to replace them, or choose another folder")
        if other and overwrite:
            if self.rank == 0:
                self._clear(rows)
            distributed.barrier()
            return {}
        return {k: r for k, r in rows.items()
                if r.get("status") == "ok" and all(self.has_array(k, lay) for lay in self.layers)}

    def has_array(self, rel: str, layer: str) -> bool:
        if self.array_path(rel, layer).exists():
            return True
        h5 = self.out / H5_NAME
        if self.fmt != "h5" or not h5.exists():
            return False
        import h5py

        with h5py.File(h5, "r") as f:
            return (rel if len(self.layers) == 1 else f"{layer}/{rel}") in f

    def _clear(self, rows: dict[str, dict]) -> None:
        for rel in rows:
            for suffix in (".npy", *(f".{lay}.npy" for lay in LAYERS)):
                for base in (self.out, self.out / PARTS):
                    (base / (rel + suffix)).unlink(missing_ok=True)
        for p in self.out.glob(f"{MANIFEST}*"):
            p.unlink()
        (self.out / H5_NAME).unlink(missing_ok=True)

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        h, _ = read_manifest(self.part)
        if h is None:
            _fsync_append(self.part, {"header": True, **self.header})

    def write(self, video: Video, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        for layer, arr in arrays.items():
            _save_npy(self.array_path(video.rel, layer), arr)
        row = self._row(video, "ok")
        row["shape"] = {k: list(v.shape) for k, v in arrays.items()} if len(arrays) > 1 else list(
            next(iter(arrays.values())).shape)
        _fsync_append(self.part, row)
        return row

    def fail(self, video: Video, why: str) -> dict[str, Any]:
        row = self._row(video, "failed")
        row["reason"] = why
        _fsync_append(self.part, row)
        return row

    def _row(self, video: Video, status: str) -> dict[str, Any]:
        return {"video": video.rel, "path": video.path, "frames": video.frames, "fps": video.fps,
                "starts": video.starts, "times": video.times,
                "layer": self.layers if len(self.layers) > 1 else self.layers[0], "status": status}

    def finish(self, order: list[str]) -> dict[str, int]:
        """Rank 0, after every rank is done: one manifest (the header, then one line per video in input
        order), and with h5 the one file assembled from the finished arrays."""
        _, rows = self.all_rows()
        lines = [json.dumps({"header": True, **self.header})]
        lines += [json.dumps(rows[r]) for r in order if r in rows]
        if self.fmt == "h5":
            self._assemble_h5([rows[r] for r in order if r in rows])
        tmp = self.manifest.with_name(f".{MANIFEST}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.manifest)
        for p in self.out.glob(f"{MANIFEST}.rank*"):
            p.unlink()
        return {"ok": sum(rows[r]["status"] == "ok" for r in order if r in rows),
                "failed": sum(rows[r]["status"] == "failed" for r in order if r in rows)}

    def _assemble_h5(self, rows: list[dict]) -> None:
        # h5py: the standard HDF5 binding; one data set per video (and layer), named by its relative path.
        import h5py

        path = self.out / H5_NAME
        tmp = path.with_name(f".{H5_NAME}.tmp")
        have = h5py.File(path, "r") if path.exists() else None
        try:
            with h5py.File(tmp, "w") as f:
                for k, v in self.header.items():
                    f.attrs[k] = json.dumps(v)
                for row in rows:
                    if row["status"] != "ok":
                        continue
                    for layer in self.layers:
                        name = row["video"] if len(self.layers) == 1 else f"{layer}/{row['video']}"
                        part = self.array_path(row["video"], layer)
                        if part.exists():
                            arr = np.load(part)
                        elif have is not None and name in have:
                            arr = have[name][()]
                        else:
                            raise ExtractError(f"{part}: missing (the output folder was changed by hand?)")
                        ds = f.create_dataset(name, data=arr)
                        ds.attrs["starts"] = row["starts"]
                        ds.attrs["times"] = row["times"]
        finally:
            if have is not None:
                have.close()
        os.replace(tmp, path)
        for row in rows:
            for layer in self.layers:
                self.array_path(row["video"], layer).unlink(missing_ok=True)
        parts = self.out / PARTS
        if parts.exists():
            for d in sorted((p for p in parts.rglob("*") if p.is_dir()), reverse=True):
                d.rmdir() if not any(d.iterdir()) else None
            if not any(parts.iterdir()):
                parts.rmdir()
