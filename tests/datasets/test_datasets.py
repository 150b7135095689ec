"""UCF101 / HMDB51 / plain lists: tiny trees in the published layouts (real file and list names, a real
MPEG-4 AVI copied under every name), every fold, labels, counts, and every kind of problem reported at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from c3d_distill.cli import main
from c3d_distill.datasets import (
    DatasetError,
    VideoList,
    load,
    load_hmdb51,
    load_list,
    load_ucf101,
    parse_spec,
)

# ---------------------------------------------------------------------------------------------- UCF101

# Real UCF101 class names, plus one with a non-ASCII name. HandstandPushups keeps UCF101's quirk: the
# folder and the lists say "HandstandPushups", the files say "v_HandStandPushups_…".
UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "HandstandPushups", "YoYo", "SkiJöring"]
UCF_GROUPS = 7  # g01…g07; fold k tests groups 2k-1 and 2k, g07 always trains
UCF_CLIPS = 3


def _ucf_file_stem(cls: str) -> str:
    return "HandStandPushups" if cls == "HandstandPushups" else cls


def ucf_rel(cls: str, g: int, c: int) -> str:
    return f"{cls}/v_{_ucf_file_stem(cls)}_g{g:02d}_c{c:02d}.avi"


def ucf_test_groups(fold: int) -> set[int]:
    return {2 * fold - 1, 2 * fold}


def make_ucf_tree(base: Path, video: Path, *, lists_at: str = "inside", newline: str = "\r\n",
                  bom: bool = False) -> tuple[Path, Path]:
    """UCF-101/<Class>/v_<Class>_gXX_cYY.avi and ucfTrainTestlist/ (inside the root, beside it, or in
    'elsewhere/'). Returns (root, lists folder)."""
    root = base / "UCF-101"
    for cls in UCF_CLASSES:
        (root / cls).mkdir(parents=True)
        for g in range(1, UCF_GROUPS + 1):
            for c in range(1, UCF_CLIPS + 1):
                shutil.copyfile(video, root / ucf_rel(cls, g, c))
    lists = {"inside": root / "ucfTrainTestlist", "beside": base / "ucfTrainTestlist",
             "elsewhere": base / "elsewhere" / "splits"}[lists_at]
    lists.mkdir(parents=True)
    pre = "\ufeff" if bom else ""

    def write(name: str, lines: list[str]) -> None:
        (lists / name).write_text(pre + "".join(line + newline for line in lines), encoding="utf-8", newline="")

    write("classInd.txt", [f"{i + 1} {c}" for i, c in enumerate(UCF_CLASSES)])
    for fold in (1, 2, 3):
        train, test = [], []
        for i, cls in enumerate(UCF_CLASSES):
            for g in range(1, UCF_GROUPS + 1):
                for c in range(1, UCF_CLIPS + 1):
                    if g in ucf_test_groups(fold):
                        test.append(ucf_rel(cls, g, c))
                    else:
                        train.append(f"{ucf_rel(cls, g, c)} {i + 1}")
        write(f"trainlist{fold:02d}.txt", train)
        write(f"testlist{fold:02d}.txt", test)
    return root, lists


@pytest.fixture()
def ucf(tmp_path, mpeg4_avi):
    return make_ucf_tree(tmp_path, mpeg4_avi)


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_ucf101_every_fold(ucf, fold):
    root, _ = ucf
    train = load(f"ucf101:{root}:{fold}", "train")
    test = load(f"ucf101:{root}:{fold}", "test")
    assert train.classes == UCF_CLASSES and test.classes == UCF_CLASSES
    n_test_groups = len(ucf_test_groups(fold))
    assert train.counts() == [(UCF_GROUPS - n_test_groups) * UCF_CLIPS] * len(UCF_CLASSES)
    assert test.counts() == [n_test_groups * UCF_CLIPS] * len(UCF_CLASSES)
    for vl in (train, test):
        for path, label in vl.items:
            p = Path(path)
            assert p.is_absolute() and p.is_file()
            assert 0 <= label < len(UCF_CLASSES)
            assert p.parent.name == UCF_CLASSES[label]  # 0-based label = classInd index - 1
    # Groups never straddle the split, and together the two splits hold every video once.
    groups = {s: {(Path(p).parent.name, Path(p).stem.split("_g")[1][:2]) for p in vl.paths}
              for s, vl in (("train", train), ("test", test))}
    assert not groups["train"] & groups["test"]
    assert len(set(train.paths) | set(test.paths)) == len(UCF_CLASSES) * UCF_GROUPS * UCF_CLIPS
    assert test.name == f"ucf101 fold {fold} test"


def test_ucf101_fold_defaults_to_1_and_function_matches_spec(ucf):
    root, _ = ucf
    assert load(f"ucf101:{root}") == load(f"ucf101:{root}:1") == load_ucf101(root, 1, "train")
    assert load(f"ucf101:{root}:2", "test") == load_ucf101(root, fold=2, split="test")
    assert load(f"ucf101:{root}:1") != load(f"ucf101:{root}:2")


@pytest.mark.parametrize("lists_at", ["beside", "elsewhere"])
def test_ucf101_lists_beside_or_apart(tmp_path, mpeg4_avi, lists_at):
    root, lists = make_ucf_tree(tmp_path, mpeg4_avi, lists_at=lists_at)
    if lists_at == "elsewhere":
        with pytest.raises(DatasetError, match="classInd.txt not found; looked in"):
            load(f"ucf101:{root}")
        vl = load(f"ucf101:{root}:3", "test", lists=lists)
    else:
        vl = load(f"ucf101:{root}:3", "test")
    assert vl.counts() == [len(ucf_test_groups(3)) * UCF_CLIPS] * len(UCF_CLASSES)


@pytest.mark.parametrize("newline,bom", [("\n", False), ("\r\n", True), ("\r", False)])
def test_ucf101_line_endings_bom_and_utf8_names(tmp_path, mpeg4_avi, newline, bom):
    root, _ = make_ucf_tree(tmp_path, mpeg4_avi, newline=newline, bom=bom)
    vl = load(f"ucf101:{root}", "train")
    assert vl.classes[0] == "ApplyEyeMakeup"  # no BOM glued to the first name
    ski = [p for p, label in vl.items if vl.classes[label] == "SkiJöring"]
    assert len(ski) == (UCF_GROUPS - 2) * UCF_CLIPS and all(Path(p).is_file() for p in ski)
    assert all(not p.endswith("\r") for p in vl.paths)


def test_ucf101_case_insensitive_file_names(ucf):
    """Some copies of UCF101 spell the files v_HandstandPushups_…, some lists v_HandStandPushups_…"""
    root, lists = ucf
    for f in (root / "HandstandPushups").iterdir():
        f.rename(f.with_name(f.name.replace("HandStandPushups", "HandstandPushups")))
    vl = load(f"ucf101:{root}", "test")
    found = [p for p in vl.paths if "andstand" in p.lower()]
    assert len(found) == 2 * UCF_CLIPS and all(Path(p).is_file() and "HandstandPushups_g" in p for p in found)


def test_ucf101_reports_every_problem_at_once(ucf):
    root, lists = ucf
    (root / ucf_rel("Archery", 3, 1)).unlink()  # missing file (train, fold 1)
    (root / ucf_rel("YoYo", 5, 2)).unlink()  # another one
    train = (lists / "trainlist01.txt").read_text(encoding="utf-8").splitlines()
    train.append(train[0])  # duplicate entry
    train.append("Juggling/v_Juggling_g01_c01.avi 3")  # unknown class
    train.append(f"{ucf_rel('Archery', 1, 1)} 9")  # label out of range 1…5 (a fold-1 test file)
    train[1] = train[1].rsplit(" ", 1)[0] + " 2"  # label 2 (Archery) on an ApplyEyeMakeup file
    train = [t for t in train if not t.startswith("YoYo/") or "_g07_" in t or "_g05_c02" in t]
    (lists / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        load(f"ucf101:{root}:1", "train")
    problems = err.value.problems
    text = "\n".join(problems)
    assert "missing file" in text and "v_Archery_g03_c01.avi" in text and "v_YoYo_g05_c02.avi" in text
    assert "duplicate entry" in text
    assert "unknown class 'Juggling'" in text
    assert "label 9 out of range 1…5" in text
    assert "disagrees with the folder 'ApplyEyeMakeup'" in text
    assert len(problems) == 6, problems
    assert err.value.source.startswith("ucf101:")
    assert str(err.value).startswith(f"{err.value.source}: 6 problems")
    # Every problem names the list file and line it comes from.
    assert all(p.startswith("trainlist01.txt:") for p in problems)

    # A class left without a video is reported too (after all its lines are gone).
    train = [t for t in train if not t.startswith("YoYo/")]
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"1 class\(es\) without a video: YoYo"):
        load(f"ucf101:{root}:1", "train")


def test_ucf101_bad_class_index_and_arguments(ucf, tmp_path):
    root, lists = ucf
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n1 Archery\nthree HandstandPushups\n4 YoYo\n"
                                        "6 SkiJöring\n7 ApplyEyeMakeup\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        load_ucf101(root, 1, "test")
    text = "\n".join(err.value.problems)
    assert "index 1 given twice" in text
    assert "expected '<index> <ClassName>'" in text
    assert "class 'ApplyEyeMakeup' listed twice" in text
    assert "indices must run 1…3 without gaps; missing [2, 3, 5]" in text
    with pytest.raises(DatasetError, match="split='val'"):
        load_ucf101(root, 1, "val")
    with pytest.raises(DatasetError, match="fold=4"):
        load(f"ucf101:{root}:4")
    with pytest.raises(DatasetError, match="video folder not found"):
        load(f"ucf101:{tmp_path / 'nope'}")


def test_ucf101_missing_split_list(ucf):
    root, lists = ucf
    (lists / "testlist02.txt").unlink()
    assert len(load(f"ucf101:{root}:2", "train"))
    with pytest.raises(DatasetError, match="testlist02.txt: list file not found"):
        load(f"ucf101:{root}:2", "test")


def test_not_utf8_list_names_the_line(ucf):
    root, lists = ucf
    data = (lists / "testlist01.txt").read_bytes()
    (lists / "testlist01.txt").write_bytes(data + "YoYo/v_Caf\u00e9.avi\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"testlist01.txt: line \d+: not UTF-8 \(byte 0xe9"):
        load(f"ucf101:{root}", "test")


# ---------------------------------------------------------------------------------------------- HMDB51

# Real HMDB51 class names (note climb / climb_stairs: the class is everything before _test_splitN).
HMDB_CLASSES = ["brush_hair", "cartwheel", "climb", "climb_stairs"]
HMDB_VIDEOS = 10  # per class: ids cycle so each fold has 6 train, 3 test, 1 unused


def hmdb_name(cls: str, k: int) -> str:
    return f"April_09_{cls}_u_nm_np1_ba_goo_{k}.avi"


def hmdb_id(fold: int, k: int) -> int:
    return [1, 1, 2, 1, 1, 2, 1, 2, 0, 1][(k + 3 * (fold - 1)) % HMDB_VIDEOS]


def make_hmdb_tree(base: Path, video: Path, *, lists_at: str = "inside") -> tuple[Path, Path]:
    root = base / "hmdb51"
    lists = (root if lists_at == "inside" else base) / "testTrainMulti_7030_splits"
    lists.mkdir(parents=True)
    for cls in HMDB_CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(HMDB_VIDEOS):
            shutil.copyfile(video, root / cls / hmdb_name(cls, k))
        for fold in (1, 2, 3):
            # The published files end each line with a space, and with CRLF.
            text = "".join(f"{hmdb_name(cls, k)} {hmdb_id(fold, k)} \r\n" for k in range(HMDB_VIDEOS))
            (lists / f"{cls}_test_split{fold}.txt").write_text(text, encoding="utf-8", newline="")
    return root, lists


@pytest.fixture()
def hmdb(tmp_path, mpeg4_avi):
    return make_hmdb_tree(tmp_path, mpeg4_avi)


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_hmdb51_every_fold(hmdb, fold):
    root, _ = hmdb
    parts = {s: load(f"hmdb51:{root}:{fold}", s) for s in ("train", "test", "unused")}
    for s, sid in (("train", 1), ("test", 2), ("unused", 0)):
        vl = parts[s]
        assert vl.classes == sorted(HMDB_CLASSES)
        want = sum(hmdb_id(fold, k) == sid for k in range(HMDB_VIDEOS))
        assert vl.counts() == [want] * len(HMDB_CLASSES)
        for path, label in vl.items:
            assert Path(path).is_file() and Path(path).parent.name == vl.classes[label]
            k = int(Path(path).stem.rsplit("_", 1)[1])
            assert hmdb_id(fold, k) == sid
    assert sum(len(v) for v in parts.values()) == len(HMDB_CLASSES) * HMDB_VIDEOS
    assert load(f"hmdb51:{root}:{fold}", "test") == load_hmdb51(root, fold, "test")


def test_hmdb51_lists_beside(tmp_path, mpeg4_avi):
    root, _ = make_hmdb_tree(tmp_path, mpeg4_avi, lists_at="beside")
    assert len(load(f"hmdb51:{root}:2", "train")) == 6 * len(HMDB_CLASSES)


def test_hmdb51_reports_every_problem_at_once(hmdb):
    root, lists = hmdb
    (root / "cartwheel" / hmdb_name("cartwheel", 0)).unlink()  # id 1 in fold 1: a missing train file
    f = lists / "climb_test_split1.txt"
    f.write_text(f.read_text(encoding="utf-8") + f"{hmdb_name('climb', 0)} 1\nbroken_line.avi 7\n", encoding="utf-8")
    (lists / "climb_stairs_test_split1.txt").unlink()  # a class without its fold-1 file
    shutil.rmtree(root / "brush_hair")  # a class without its folder
    with pytest.raises(DatasetError) as err:
        load(f"hmdb51:{root}:1", "train")
    text = "\n".join(err.value.problems)
    assert "missing file" in text and hmdb_name("cartwheel", 0) in text
    assert "duplicate entry" in text
    assert "expected '<name>.avi 0|1|2', got 'broken_line.avi 7'" in text
    assert "no climb_stairs_test_split1.txt" in text
    assert "folder" in text and "brush_hair" in text
    assert len(err.value.problems) == 5, err.value.problems
    # Fold 2 is still complete for the classes that have their folder: only brush_hair is reported there.
    with pytest.raises(DatasetError) as err2:
        load(f"hmdb51:{root}:2", "test")
    assert len(err2.value.problems) == 1 and "brush_hair" in err2.value.problems[0]


# ---------------------------------------------------------------------------------------------- lists


def test_plain_list_paths_labels_and_utf8(tmp_path, mpeg4_avi):
    (tmp_path / "clips" / "sub dir").mkdir(parents=True)
    names = ["clips/a.avi", "clips/sub dir/b with spaces.avi", "clips/ünïcødé 名前.avi"]
    for n in names:
        shutil.copyfile(mpeg4_avi, tmp_path / n)
    absolute = tmp_path / "clips" / "abs.avi"
    shutil.copyfile(mpeg4_avi, absolute)
    lst = tmp_path / "train.txt"
    lst.write_text(f"# comment\r\n{names[0]} 0\r\n\r\n{names[1]} 2\r\n{names[2]} 1\r\n{absolute} 2\r\n",
                   encoding="utf-8")
    vl = load(f"list:{lst}")
    assert vl.classes == ["0", "1", "2"]
    assert vl.items == [(str(tmp_path / names[0]), 0), (str(tmp_path / names[1]), 2),
                        (str(tmp_path / names[2]), 1), (str(absolute), 2)]
    assert vl == load_list(lst) and len(vl) == 4 and vl.counts() == [1, 1, 2]


def test_plain_list_class_names_classes_file_and_backslashes(tmp_path, mpeg4_avi):
    (tmp_path / "v").mkdir()
    for n in ("x.avi", "y.avi", "z.avi"):
        shutil.copyfile(mpeg4_avi, tmp_path / "v" / n)
    lst = tmp_path / "val.txt"
    lst.write_text("v\\x.avi walk\nv/y.avi run\nv/z.avi walk\n", encoding="utf-8")
    vl = load_list(lst)
    assert vl.classes == ["run", "walk"] and vl.labels == [1, 0, 1]
    (tmp_path / "classes.txt").write_text("walk\nrun\njump\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"class\(es\) without a video: jump"):
        load_list(lst)
    vl = load_list(lst, classes=["walk", "run"])
    assert vl.labels == [0, 1, 0]


def test_plain_list_reports_every_problem_at_once(tmp_path, mpeg4_avi):
    shutil.copyfile(mpeg4_avi, tmp_path / "a.avi")
    shutil.copyfile(mpeg4_avi, tmp_path / "b.avi")
    (tmp_path / "classes.txt").write_text("walk\nrun\njump\n", encoding="utf-8")
    lst = tmp_path / "l.txt"
    lst.write_text("a.avi 0\nb.avi 3\nmissing.avi 1\na.avi 0\nno_label_here\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        load(f"list:{lst}")
    text = "\n".join(err.value.problems)
    assert "l.txt:2: label 3 out of range 0…2" in text
    assert "l.txt:3: missing file" in text
    assert "l.txt:4: duplicate entry 'a.avi' (first on line 1)" in text
    assert "l.txt:5: expected '<path> <label>'" in text
    assert "without a video: run, jump" in text
    assert len(err.value.problems) == 5
    lst.write_text("a.avi 0\nb.avi run\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="labels mix integers"):
        load_list(lst)


# ---------------------------------------------------------------------------------------------- specs, types


def test_parse_spec():
    assert parse_spec("ucf101:/data/UCF-101") == ("ucf101", "/data/UCF-101", 1)
    assert parse_spec("ucf101:/data/UCF-101:3") == ("ucf101", "/data/UCF-101", 3)
    assert parse_spec("hmdb51:/a:b/hmdb:2") == ("hmdb51", "/a:b/hmdb", 2)
    assert parse_spec("list:/x/train:1.txt") == ("list", "/x/train:1.txt", 1)
    assert parse_spec("synth:out") == ("synth", "out", 1)
    for bad in ("kinetics:/x", "ucf101", "ucf101:", "/data/UCF-101"):
        with pytest.raises(DatasetError, match="expected one of ucf101:PATH"):
            parse_spec(bad)


def test_videolist_and_error_types():
    vl = VideoList([("/a.avi", 1), ("/b.avi", 1)], ["x", "y"], name="one")
    assert vl == VideoList([("/a.avi", 1), ("/b.avi", 1)], ["x", "y"], name="another")
    assert vl.counts() == [0, 2] and vl.paths == ["/a.avi", "/b.avi"] and vl.labels == [1, 1]
    assert list(vl) == vl.items and vl[1] == ("/b.avi", 1)
    err = DatasetError("src", [f"p{i}" for i in range(100)])
    assert isinstance(err, ValueError) and len(err.problems) == 100
    msg = str(err)
    assert msg.startswith("src: 100 problems") and "p39" in msg and "p40" not in msg
    assert "and 60 more" in msg


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_data_info(ucf, capsys):
    root, _ = ucf
    assert main(["data", "info", f"ucf101:{root}:2", "--probe", "2"]) == 0
    out = capsys.readouterr().out
    assert f"ucf101:{root}:2: 5 classes, fold 2" in out
    assert "folds with lists: 1, 2, 3" in out
    row = next(line for line in out.splitlines() if "SkiJöring" in line)
    assert row.split()[-2:] == [str((UCF_GROUPS - 2) * UCF_CLIPS), str(2 * UCF_CLIPS)]
    assert "total" in out
    assert out.count("mpeg4 320x240 @ 25.00 fps, 60 frames") == 2


def test_cli_data_info_reports_problems(ucf, capsys):
    root, _ = ucf
    (root / ucf_rel("YoYo", 7, 1)).unlink()
    assert main(["data", "info", f"ucf101:{root}"]) == 2
    err = capsys.readouterr().err
    assert "c3d-distill: error: " in err and "1 problem" in err and "v_YoYo_g07_c01.avi" in err


def test_cli_data_info_list(tmp_path, mpeg4_avi, capsys):
    shutil.copyfile(mpeg4_avi, tmp_path / "a.avi")
    (tmp_path / "l.txt").write_text("a.avi 0\n", encoding="utf-8")
    assert main(["data", "info", f"list:{tmp_path / 'l.txt'}", "--probe", "0"]) == 0
    out = capsys.readouterr().out
    assert f"list:{tmp_path / 'l.txt'}: 1 class\n" in out and "videos" in out and "probe" not in out


def test_fingerprint_ignores_where_the_set_lies_but_not_what_it_holds(tmp_path, mpeg4_avi):
    from c3d_distill.datasets import load

    for d in ("a", "b"):
        (tmp_path / d / "x").mkdir(parents=True)
        shutil.copyfile(mpeg4_avi, tmp_path / d / "x" / "one.avi")
        shutil.copyfile(mpeg4_avi, tmp_path / d / "x" / "two.avi")
        (tmp_path / d / "l.txt").write_text("x/one.avi run\nx/two.avi walk\n", encoding="utf-8")
    a, b = (load(f"list:{tmp_path / d / 'l.txt'}").fingerprint() for d in ("a", "b"))
    assert a == b and a["videos"] == 2 and a["classes"] == 2  # a moved copy is the same data set
    (tmp_path / "b" / "l.txt").write_text("x/one.avi walk\nx/two.avi run\n", encoding="utf-8")
    assert load(f"list:{tmp_path / 'b' / 'l.txt'}").fingerprint()["sha256"] != a["sha256"]  # labels swapped


def test_fingerprint_names_files_outside_the_root_by_absolute_path(tmp_path, mpeg4_avi):
    from c3d_distill.datasets import load

    video = tmp_path / "videos" / "one.avi"
    video.parent.mkdir()
    shutil.copyfile(mpeg4_avi, video)
    (tmp_path / "lists" / "deeper").mkdir(parents=True)
    for d in ("lists", "lists/deeper"):  # the same file, named from two depths (no ../ paths in the hash)
        (tmp_path / d / "l.txt").write_text(f"{video} run\n", encoding="utf-8")
    a, b = (load(f"list:{tmp_path / d / 'l.txt'}") for d in ("lists", "lists/deeper"))
    assert a.fingerprint() == b.fingerprint() and a.video_hashes() == b.video_hashes()
    assert len(a.video_hashes()) == 1 and len(a.video_hashes()[0]) == 16


def test_training_overlap_finds_the_same_files_named_from_another_folder(tmp_path, mpeg4_avi):
    # Train list beside its videos (names relative to its root), test list elsewhere naming the same files
    # (absolute paths, outside its root): eval must still see that they are training videos.
    from c3d_distill.datasets import load
    from c3d_distill.evaluate.evaluation import training_overlap

    (tmp_path / "a" / "v").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    for name in ("one", "two", "three"):
        shutil.copyfile(mpeg4_avi, tmp_path / "a" / "v" / f"{name}.avi")
    (tmp_path / "a" / "train.txt").write_text("v/one.avi run\nv/two.avi walk\n", encoding="utf-8")
    (tmp_path / "b" / "test.txt").write_text(
        f"{tmp_path / 'a' / 'v' / 'two.avi'} walk\n{tmp_path / 'a' / 'v' / 'three.avi'} run\n", encoding="utf-8"
    )
    train, test = load(f"list:{tmp_path / 'a' / 'train.txt'}"), load(f"list:{tmp_path / 'b' / 'test.txt'}")
    assert set(train.video_hashes()).isdisjoint(test.video_hashes())  # by name they differ
    recorded = {**train.fingerprint(), "video_hashes": train.video_hashes(),
                "video_path_hashes": train.video_hashes(absolute=True)}
    assert training_overlap(recorded, test) == 1  # two.avi
    assert training_overlap(recorded, train) == 2
    assert training_overlap({k: v for k, v in recorded.items() if k != "video_path_hashes"}, test) == 0
    assert training_overlap({"sha256": recorded["sha256"]}, test) is None  # unknown without hashes
