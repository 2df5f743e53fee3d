"""BVH, CSV and JSON-lines exports: hand-computed cases and a round trip through an independent BVH reader."""
from __future__ import annotations

import json

import numpy as np
import pytest

import export_poses
from common.core.bones import adjust_bone_lengths, bone_lengths
from common.output.bvh import BVH_NAMES, REST_DIRECTIONS, TO_BVH_AXES, _euler_zxy, bvh_motion, write_bvh
from common.utils.errors import UserError
from common.utils.fileio import save_npz
from common.output.exports import EXPORTS, ExportFormat, parse_export_formats
from common.output.pose_tables import CSV_COLUMNS, csv_text, read_jsonl, write_jsonl
from common.core.skeleton import ANCESTOR_BONES, BONE_NAMES
from helpers import read_bvh_positions

pytest.importorskip("bvhio")  # the round trips read the BVH back with it


def rest_pose(lengths: np.ndarray) -> np.ndarray:
    """The BVH rest T-pose (17, 3) metres z-up with the given bone lengths, pelvis at the origin."""
    bvh_axes = ANCESTOR_BONES @ (REST_DIRECTIONS * lengths[:, None])
    return bvh_axes @ TO_BVH_AXES  # inverse of the axis change (orthogonal)


LENGTHS = np.array([.13, .45, .44, .13, .45, .44, .23, .25, .11, .12, .15, .28, .25, .15, .28, .25])


def test_euler_zxy_of_a_known_rotation():
    a, b, c = np.radians([30.0, 20.0, 10.0])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    np.testing.assert_allclose(_euler_zxy(rz @ rx @ ry), [30.0, 20.0, 10.0], atol=1e-9)


def test_rest_pose_has_no_rotations_and_offsets_from_lengths():
    pose = rest_pose(LENGTHS) + [0.5, -1.0, 0.9]
    offsets, channels = bvh_motion(pose[None], LENGTHS)
    np.testing.assert_allclose(channels[0, :3], [50.0, 90.0, 100.0], atol=1e-9)  # (x, z, -y) cm
    np.testing.assert_allclose(channels[0, 3:], 0.0, atol=1e-9)
    r_knee = BVH_NAMES.index("r_knee")
    np.testing.assert_allclose(offsets[r_knee], [0, -45.0, 0])  # the thigh, pointing down, in cm
    assert np.allclose(offsets[BVH_NAMES.index("spine_root")], 0)


def test_bvh_round_trip_through_bvhio(tmp_path):
    rng = np.random.default_rng(0)
    frames = 12
    poses = rest_pose(LENGTHS) + rng.normal(0, 0.12, (frames, 17, 3))
    poses[0] = rest_pose(LENGTHS)
    poses[1, 3] = poses[1, 2] - (poses[1, 2] - poses[1, 1])  # calf folded back onto the thigh: a half turn
    poses = adjust_bone_lengths(poses, LENGTHS) + np.cumsum(rng.normal(0, 0.05, (frames, 1, 3)), axis=0)
    path = write_bvh(tmp_path / "motion.bvh", poses, LENGTHS, fps=25.0)
    text = path.read_text()
    assert "Frame Time: 0.04000000" in text and f"Frames: {frames}" in text
    back = read_bvh_positions(path)
    assert np.abs(back - poses).max() < 1e-4  # metres: 0.1 mm, far inside the 1 mm requirement


def test_bvh_rejects_bad_lengths_and_fps(tmp_path):
    pose = rest_pose(LENGTHS)[None]
    with pytest.raises(UserError, match="positive bone lengths"):
        write_bvh(tmp_path / "a.bvh", pose, LENGTHS * 0, 30.0)
    with pytest.raises(UserError, match="frame rate"):
        write_bvh(tmp_path / "a.bvh", pose, LENGTHS, 0.0)


def test_csv_columns_units_and_values():
    poses = np.arange(2 * 17 * 3, dtype=np.float64).reshape(2, 17, 3) / 1000
    text = csv_text(poses, np.array([7, 8]), "test frame", 30.0, LENGTHS)
    lines = text.splitlines()
    comments = [ln for ln in lines if ln.startswith("#")]
    assert any("metres" in ln for ln in comments) and any("test frame" in ln for ln in comments)
    assert any("r_thigh=0.45000" in ln for ln in comments)
    header = lines[len(comments)].split(",")
    assert header[:4] == ["frame", "pelvis_x", "pelvis_y", "pelvis_z"] and header[-1] == "r_wrist_z"
    assert header == CSV_COLUMNS and len(header) == 52
    table = np.loadtxt(lines[len(comments) + 1:], delimiter=",")
    assert table[:, 0].tolist() == [7, 8]
    np.testing.assert_allclose(table[1, 1:4], [0.051, 0.052, 0.053])  # frame 8's pelvis (x, y, z)


def test_jsonl_header_and_records(tmp_path):
    poses = np.zeros((3, 17, 3))
    poses[:, 10, 2] = [1.0, 1.1, 1.23456789]
    path = write_jsonl(tmp_path / "p.jsonl", poses, np.array([4, 5, 6]), 20.0, LENGTHS, "test frame")
    header, records = read_jsonl(path)
    assert header["units"] == "metres" and header["joint_names"][10] == "head" and header["fps"] == 20.0
    assert [r["frame"] for r in records] == [4, 5, 6]
    assert records[1]["time_s"] == 0.25  # frame 5 at 20 fps
    assert records[2]["joints"][10] == [0.0, 0.0, 1.23457]  # rounded to 0.01 mm
    assert records[0]["lengths"][1] == 0.45
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_parse_export_formats():
    assert parse_export_formats("bvh, CSV") == ("bvh", "csv")
    assert parse_export_formats(None) == ()
    with pytest.raises(UserError, match="unknown format"):
        parse_export_formats("bvh,fbx")
    with pytest.raises(UserError, match="--format: unknown format"):
        parse_export_formats("poses", "--format")                   # written by every run: not on request


def _npy_poses(result, files):
    """A toy format's writer: the adjusted poses as one .npy."""
    np.save(files["npy"], result.after)
    return files


def test_a_format_added_once_is_accepted_by_both_scripts(tmp_path, monkeypatch):
    """One entry in EXPORTS: inference.py --export and export_poses.py --format both write it."""
    import inference

    monkeypatch.setitem(EXPORTS, "npy", ExportFormat({"npy": "poses_3d.npy"}, _npy_poses))
    camera = rest_pose(LENGTHS) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    poses = (camera + np.random.default_rng(2).normal(0, 0.02, (12, 17, 3))).astype(np.float32)
    np.save(tmp_path / "lifter.npy", poses)
    export_poses.main(["--poses", str(tmp_path / "lifter.npy"), "--format", "npy,csv", "--fps", "25",
                       "--output", str(tmp_path / "conv")])
    converted = np.load(tmp_path / "conv.npy")
    assert converted.shape == (12, 17, 3) and (tmp_path / "conv.csv").is_file()
    np.testing.assert_allclose(bone_lengths(converted), bone_lengths(converted)[:1].repeat(12, 0), atol=1e-5)
    keypoints = np.random.default_rng(3).uniform(100, 500, (12, 17, 2)).astype(np.float32)
    save_npz(tmp_path / "kp.npz", positions_2d={"v.mp4": {"custom": [keypoints]}},
             metadata={"layout_name": "h36m", "video_metadata": {"v.mp4": {"w": 640, "h": 480}}})
    inference.main(["--keypoints", str(tmp_path / "kp.npz"), "--fps", "25", "--poses", str(tmp_path / "lifter.npy"),
                    "--lengths", "self", "--export", "npy", "--output", str(tmp_path / "out"), "--no_progress",
                    "--panel_height", "64"])
    np.testing.assert_allclose(np.load(tmp_path / "out" / "kp_poses_3d.npy"),
                               np.load(tmp_path / "out" / "kp_poses_3d.npz")["poses_after"])


def test_converter_adjusts_any_poses_and_writes_every_format(tmp_path, capsys):
    rng = np.random.default_rng(1)
    camera = rest_pose(LENGTHS) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # z up -> camera (y down)
    poses = (camera + rng.normal(0, 0.02, (20, 17, 3))).astype(np.float32)
    np.save(tmp_path / "lifter.npy", poses)
    (tmp_path / "lengths.json").write_text(json.dumps({"lengths": dict(zip(BONE_NAMES, LENGTHS.tolist()))}))
    export_poses.main(["--poses", str(tmp_path / "lifter.npy"), "--lengths", str(tmp_path / "lengths.json"),
                       "--fps", "50", "--output", str(tmp_path / "out")])
    back = read_bvh_positions(tmp_path / "out.bvh")
    np.testing.assert_allclose(bone_lengths(back), np.broadcast_to(LENGTHS, (20, 16)), atol=1e-4)
    assert back[:, :, 2].min() > -1e-4  # grounded, z up
    _, records = read_jsonl(tmp_path / "out.jsonl")
    np.testing.assert_allclose(np.array([r["joints"] for r in records]), back, atol=1e-4)
    with pytest.raises(UserError, match="metres between"):
        (tmp_path / "bad.json").write_text('{"thigh": 450}')
        export_poses.main(["--poses", str(tmp_path / "lifter.npy"), "--lengths", str(tmp_path / "bad.json")])


def test_people_exports_have_a_person_axis_and_column(tmp_path):
    from common.inference.inference_pipeline import PersonResult
    from common.output.exports import write_people_exports
    from common.vision.tracking import Track2D

    rng = np.random.default_rng(5)
    people = []
    for identity, start, frames in ((0, 0, 6), (3, 2, 3)):           # person 3 appears at frame 2, for 3 frames
        after = rng.normal(size=(frames, 17, 3)).astype(np.float32)
        track = Track2D(rng.uniform(0, 100, (frames, 17, 2)).astype(np.float32), np.ones((frames, 17), np.float32),
                        100, 100, gaps=[(1, 1)] if identity == 3 else [], start=start)
        people.append(PersonResult(identity, track, after * 0.9, after, np.full(16, 0.3 + identity / 10)))
    files = write_people_exports("clip", people, None, 30.0, "camera", {"lifter": "x"}, tmp_path, ("csv", "jsonl"))
    data = np.load(files["people_npz"], allow_pickle=True)
    assert data["poses_after"].shape == (2, 6, 17, 3) and data["identities"].tolist() == [0, 3]
    assert data["present"].tolist() == [[True] * 6, [False, False, True, True, True, False]]
    assert data["interpolated"][1].tolist() == [False, False, False, True, False, False]
    np.testing.assert_array_equal(data["poses_after"][1, 2:5], people[1].poses_after)
    assert np.isnan(data["poses_after"][1, [0, 1, 5]]).all()
    np.testing.assert_allclose(data["bone_lengths"][:, 0], [0.3, 0.6])
    rows = np.loadtxt(files["people_csv"], delimiter=",", comments="#", skiprows=4)
    header = [line for line in files["people_csv"].read_text().splitlines() if not line.startswith("#")][0]
    assert header.split(",")[:3] == ["person", "frame", "pelvis_x"] and len(rows) == 9
    assert rows[:, :2].tolist()[:4] == [[0, 0], [0, 1], [0, 2], [3, 2]]    # frame order, then person
    np.testing.assert_allclose(rows[3, 2:].reshape(17, 3), people[1].poses_after[0], atol=1e-5)
    head, records = read_jsonl(files["people_jsonl"])
    assert head["people"] == [0, 3] and len(records) == 9
    assert [(r["person"], r["frame"]) for r in records[2:4]] == [(0, 2), (3, 2)]
    np.testing.assert_allclose(records[3]["joints"], people[1].poses_after[0], atol=1e-5)
