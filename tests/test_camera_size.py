"""A person's height read through one calibrated camera (common/inference/camera_size.py, inference.py --calibration):
a standing figure filmed by a synthetic calibrated camera is read at its true height, whatever the floor's height in
the world, the video's resolution or the lens distortion; bad calibrations and flags are one-line errors."""
import numpy as np
import pytest

from common.core.camera import camera_features_of, world_up_in_camera
from common.inference.camera_size import (MIN_FRAMES, calibration_camera, floor_camera, read_stature,
                                          stature_constants)
from common.inference.multiview import CalibratedCamera, write_toml
from common.utils.errors import UserError
from common.vision.tracking import Track2D

SIZE = (1080, 1920)  # a portrait phone video, as the Pose2Sim demos


def _camera(floor_z: float = 0.0, dist=(0.0, 0.0, 0.0, 0.0), name: str = "cam01") -> CalibratedCamera:
    """A camera 1.4 m above the floor, 5 m behind the origin, looking along +y pitched 8 degrees down."""
    pitch = np.deg2rad(8.0)
    level = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # world z up -> camera y down
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(pitch), -np.sin(pitch)], [0.0, np.sin(pitch), np.cos(pitch)]])
    K = np.array([[1400.0, 0.0, 540.0], [0.0, 1400.0, 960.0], [0.0, 0.0, 1.0]])
    return CalibratedCamera(name, K, np.asarray(dist, np.float64), tilt @ level, np.array([0.2, -5.0, 1.4 + floor_z]),
                            SIZE)


def _standing(head_above_ankle: float, floor_z: float = 0.0, frames: int = 60) -> np.ndarray:
    """An upright figure (T, 17, 3) world metres at the origin: both ankles at the population's ankle height above
    the floor, knees, hips, thorax and head on the verticals above them, arms hanging."""
    ankle, _ = stature_constants()
    base = floor_z + ankle
    joints = np.zeros((17, 3))
    for hip, x in ((1, -0.1), (4, 0.1)):  # hip, knee, ankle of each side: 1-3 right, 4-6 left
        joints[hip:hip + 3] = [[x, 0.0, base + f * head_above_ankle] for f in (0.5, 0.27, 0.0)]
    joints[0] = [0.0, 0.0, base + 0.5 * head_above_ankle]                # pelvis
    joints[7] = [0.0, 0.0, base + 0.65 * head_above_ankle]               # spine
    joints[8] = [0.0, 0.0, base + 0.8 * head_above_ankle]                # thorax
    joints[9] = [0.0, -0.08, base + 0.9 * head_above_ankle]              # nose
    joints[10] = [0.0, 0.0, base + head_above_ankle]                     # head
    for shoulder, x in ((11, 0.18), (14, -0.18)):
        joints[shoulder:shoulder + 3] = [[x, 0.0, base + 0.8 * head_above_ankle - d] for d in (0.0, 0.28, 0.52)]
    return np.repeat(joints[None], frames, axis=0)


def _track(camera: CalibratedCamera, world: np.ndarray, scale: float = 1.0) -> Track2D:
    """The figure as BlazePose would give it: pixels of a video ``scale`` x the calibrated size, confidences 1,
    its 3D in the camera's axes around the pelvis as the world landmarks."""
    pixels = camera.project(world) * scale
    own = camera.to_camera(world)
    return Track2D(pixels.astype(np.float32), np.ones(pixels.shape[:2], np.float32), round(SIZE[0] * scale),
                   round(SIZE[1] * scale), world=(own - own[:, :1]).astype(np.float32))


def test_floor_camera_has_the_calibrations_up_and_height():
    camera = _camera(floor_z=0.3)
    features = camera_features_of(floor_camera(camera, floor_z=0.3))
    np.testing.assert_allclose(world_up_in_camera(floor_camera(camera, 0.3)), camera.R @ [0, 0, 1], atol=1e-6)
    assert np.isclose(features[7], 1.4)  # the camera centre above the floor, not above the world's z = 0
    np.testing.assert_allclose(np.exp(features[:2]), [1400 / 1080 * 2, 1400 / 1080 * 2])


@pytest.mark.parametrize("floor_z, scale, dist", [(0.0, 1.0, (0, 0, 0, 0)), (0.5, 1.0, (0, 0, 0, 0)),
                                                  (0.0, 0.5, (0, 0, 0, 0)), (0.0, 1.0, (-0.12, 0.03, 0.001, 0.0))])
def test_a_standing_figure_is_read_at_its_height(floor_z, scale, dist):
    """Head 1.55 m above the ankles -> stature 1.55 x the population's stature / head-above-ankle ratio, with the
    floor at another height of the world (--floor_z), the video at half the calibrated size, a distorting lens."""
    camera = _camera(floor_z, dist)
    _, stature_log = stature_constants()
    read, frames = read_stature(_track(camera, _standing(1.55, floor_z), scale), camera, fps=50.0, floor_z=floor_z)
    assert read is not None and np.isclose(read, 1.55 * np.exp(stature_log), rtol=2e-3)
    assert frames == 60 - 2 * 5  # every frame but the plant window's ends


def test_a_wrong_floor_reads_a_wrong_height_and_too_few_frames_read_nothing():
    camera = _camera()
    _, stature_log = stature_constants()
    true = 1.55 * np.exp(stature_log)
    # the person stands 0.2 m below the calibrated floor (another level): their ray meets the floor too near
    assert read_stature(_track(camera, _standing(1.55, floor_z=-0.2)), camera, fps=50.0)[0] < 0.95 * true
    assert np.isclose(read_stature(_track(camera, _standing(1.55, floor_z=-0.2)), camera, 50.0, floor_z=-0.2)[0],
                      true, rtol=2e-3)
    # fewer usable frames than MIN_FRAMES (planted-foot frames need their window of frames either side)
    assert read_stature(_track(camera, _standing(1.55, frames=MIN_FRAMES)), camera, fps=50.0) == (None, 0)
    # an unseen head (low confidence) on every frame: nothing to read
    track = _track(camera, _standing(1.55))
    track.confidence[:, 10] = 0.1
    assert read_stature(track, camera, fps=50.0) == (None, 0)


def test_calibration_camera_errors(tmp_path):
    path = tmp_path / "calib.toml"
    write_toml(path, [_camera(name="cam01"), _camera(name="cam02")])
    assert calibration_camera(path, "cam02").name == "cam02"
    with pytest.raises(UserError, match="holds 2 cameras .*--camera"):
        calibration_camera(path, None)
    with pytest.raises(UserError, match="'cam09' is not in .*cam01, cam02"):
        calibration_camera(path, "cam09")
    camera = _camera()
    track = _track(camera, _standing(1.55))
    wide = Track2D(track.positions, track.confidence, 1920, 1080)
    with pytest.raises(UserError, match="different aspect ratio"):
        read_stature(wide, camera, fps=50.0)


def test_inference_sizes_each_person_by_their_height_or_the_camera_read(monkeypatch, tmp_path):
    """``inference.py --people all --calibration F --camera cam01 --height 1.9``: person 0 is sized by their
    ``--height``, person 1 by the height read through cam01 (the video at half the calibrated size); the metadata
    says which; flags without a calibration, a source with a size of its own, an ambiguous camera, a video of
    another aspect ratio: one-line errors before any detection."""
    import json

    import common.inference.inference_pipeline as pipeline
    import inference
    from common.inference.body_size import height_size, limb_size
    from common.vision.video import VideoWriter

    camera = _camera()
    calibration = tmp_path / "calib.toml"
    write_toml(calibration, [camera, _camera(name="cam02")])
    video = tmp_path / "v.mp4"
    with VideoWriter(video, SIZE[0] // 2, SIZE[1] // 2, 50.0) as writer:
        for _ in range(60):
            writer.write(np.zeros((SIZE[1] // 2, SIZE[0] // 2, 3), np.uint8))
    tracks = [(0, _track(camera, _standing(1.45), 0.5)), (1, _track(camera, _standing(1.55), 0.5))]
    monkeypatch.setattr(pipeline, "extract_people", lambda *args: tracks)
    out = tmp_path / "out"
    inference.run_cli(["--video", str(video), "--people", "all", "--calibration", str(calibration), "--camera",
                       "cam01", "--height", "1.9", "--output", str(out), "--no_progress"])
    found = []
    for identity in range(2):
        data = json.loads((out / f"v_person{identity}_bone_lengths.json").read_text())
        found.append((limb_size(np.atleast_2d(np.asarray(data["predicted"]["per_frame"]))[0]),
                      data["adjustment"]["size"]))
    read = read_stature(tracks[1][1], camera, 50.0)[0]
    assert found[0][0] == pytest.approx(height_size(1.9, "blazepose"), rel=1e-4) and found[0][1].startswith("--height")
    assert found[1][0] == pytest.approx(height_size(read, "blazepose"), rel=1e-4)
    assert "read through calibrated camera cam01 on 50 frames" in found[1][1]

    run = ["--video", str(video), "--output", str(tmp_path / "bad"), "--no_progress"]
    with pytest.raises(UserError, match="give the calibration file too"):
        inference.main(run + ["--camera", "cam01"])
    with pytest.raises(UserError, match="holds 2 cameras"):
        inference.main(run + ["--calibration", str(calibration)])
    measured = tmp_path / "lengths.json"
    measured.write_text(json.dumps([0.1, 0.4, 0.4, 0.1, 0.4, 0.4, 0.25, 0.25, 0.1, 0.1, 0.15, 0.28, 0.25, 0.15,
                                    0.28, 0.25]))
    with pytest.raises(UserError, match="has a size of its own"):
        inference.main(run + ["--calibration", str(calibration), "--camera", "cam01", "--lengths_file", str(measured)])
    poses = tmp_path / "their_lifter.npy"
    np.save(poses, _standing(1.55, frames=60).astype(np.float32))
    with pytest.raises(UserError, match="limb-to-stature ratio, which .* has not for --lifter poses"):
        inference.main(run + ["--calibration", str(calibration), "--camera", "cam01", "--poses", str(poses),
                              "--lengths", "self"])
    wide = tmp_path / "wide.mp4"
    with VideoWriter(wide, 640, 480, 50.0) as writer:
        writer.write(np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(UserError, match="different aspect ratio"):
        inference.main(["--video", str(wide), "--output", str(tmp_path / "bad2"), "--calibration", str(calibration),
                        "--camera", "cam01"])


def test_live_reads_the_height_through_the_camera_over_its_warm_up():
    """``--live --calibration``: a person's adjustment reads their height from the frames of the warm-up so far;
    once readable their size is that height's, as offline; an explicit ``--height`` wins."""
    from common.inference.body_size import height_size, limb_size
    from common.inference.live import CameraRead, LiveAdjustment, LiveLengths

    camera = _camera()
    track = _track(camera, _standing(1.55, frames=40))
    target = np.array([0.1, 0.4, 0.4, 0.1, 0.4, 0.4, 0.25, 0.25, 0.1, 0.1, 0.15, 0.28, 0.25, 0.15, 0.28, 0.25])

    def run(height):
        adjustment = LiveAdjustment("blazepose", True, height, "rigid", 100, LiveLengths(None, 1.0),
                                    CameraRead(camera, 50.0))
        for t in range(len(track)):
            one = Track2D(track.positions[t:t + 1], track.confidence[t:t + 1], track.width, track.height,
                          world=track.world[t:t + 1])
            lengths = adjustment.step(track.world[t], one, target)
        return adjustment, lengths

    adjustment, lengths = run(None)
    assert adjustment.read == pytest.approx(read_stature(track, camera, 50.0)[0], rel=1e-9)
    assert limb_size(lengths) == pytest.approx(height_size(adjustment.read, "blazepose"), rel=1e-6)
    assert "read through calibrated camera cam01" in adjustment.metadata()["size"]
    adjustment, lengths = run(1.9)
    assert adjustment.read is None and limb_size(lengths) == pytest.approx(height_size(1.9, "blazepose"), rel=1e-6)


def test_a_calibration_that_is_not_z_up_warns_and_a_camera_below_the_floor_is_an_error(capsys):
    from common.inference.camera_size import check_upright

    check_upright(_camera())
    assert capsys.readouterr().err == ""
    y_up = _camera()
    y_up.R = y_up.R @ np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # the world's y is up
    check_upright(y_up)
    assert "z axis is 82 degrees from camera cam01's up" in capsys.readouterr().err
    with pytest.raises(UserError, match="above the floor"):
        check_upright(_camera(), floor_z=2.0)
